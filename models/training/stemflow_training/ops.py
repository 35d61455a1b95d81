"""A tiny ops interface with two backends.

The flow (glow.py) is written once against these ops:
  * JaxOps  - jax.numpy, used for training, for the autodiff reference and in tests;
  * OnnxOps - an onnx.helper graph builder (opset 18), used by export.py.
Tensors are [B, channels, T].  Constants passed to OnnxOps become initializers
(float32); the same initializer may be used by several nodes (a Conv and the
ConvTranspose of its adjoint share weights).
"""
import numpy as np

OPSET = 18


class JaxOps:
    def __init__(self):
        import jax
        import jax.numpy as jnp
        self.jax = jax
        self.jnp = jnp

    # constants / parameters are passed straight through
    def const(self, name, arr):
        return arr

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def neg(self, a):
        return -a

    def exp(self, a):
        return self.jnp.exp(a)

    def log(self, a):
        return self.jnp.log(a)

    def tanh(self, a):
        return self.jnp.tanh(a)

    def relu(self, a):
        return self.jnp.maximum(a, 0.0)

    def positive_mask(self, a):
        return (a > 0).astype(a.dtype)

    def maximum(self, a, c):
        return self.jnp.maximum(a, c)

    def clip(self, a, lo, hi):
        return self.jnp.clip(a, lo, hi)

    def abs(self, a):
        return self.jnp.abs(a)

    def sign(self, a):
        return self.jnp.sign(a)

    def log_softmax_channels(self, a):
        return self.jax.nn.log_softmax(a, axis=1)

    def sum_channels(self, a):
        """Sum over channels, kept as one channel: [B, C, T] -> [B, 1, T]."""
        return self.jnp.sum(a, axis=1, keepdims=True)

    def shift_right(self, a):
        """u[t] = a[t - 1], u[0] = 0 (causal: what precedes each sample)."""
        return self.jnp.pad(a, ((0, 0), (0, 0), (1, 0)))[:, :, :-1]

    def shift_left(self, a):
        """u[t] = a[t + 1], u[T - 1] = 0: the adjoint of shift_right."""
        return self.jnp.pad(a, ((0, 0), (0, 0), (0, 1)))[:, :, 1:]

    def conv1d(self, x, w, b, dilation):
        """ONNX-style Conv (cross-correlation), k odd, 'same' padding."""
        k = w.shape[-1]
        p = dilation * (k - 1) // 2
        y = self.jax.lax.conv_general_dilated(
            x, w, window_strides=(1,), padding=[(p, p)], rhs_dilation=(dilation,),
            dimension_numbers=('NCH', 'OIH', 'NCH'))
        if b is not None:
            y = y + b[None, :, None]
        return y

    def conv1d_adjoint(self, g, w, dilation):
        """Adjoint of conv1d w.r.t. its input (= ONNX ConvTranspose with the same weights)."""
        k = w.shape[-1]
        p = dilation * (k - 1) // 2
        wt = self.jnp.flip(self.jnp.transpose(w, (1, 0, 2)), axis=2)
        return self.jax.lax.conv_general_dilated(
            g, wt, window_strides=(1,), padding=[(p, p)], rhs_dilation=(dilation,),
            dimension_numbers=('NCH', 'OIH', 'NCH'))

    def group_matmul(self, u, w, transpose=False):
        """Grouped 1x1 conv: w [G, gs, gs] acts on contiguous channel groups."""
        G, gs, _ = w.shape
        B, C, T = u.shape
        v = u.reshape(B, G, gs, T)
        eq = 'gji,bgjt->bgit' if transpose else 'gij,bgjt->bgit'
        return self.jnp.einsum(eq, w, v).reshape(B, C, T)

    def split_groups(self, u, G, gs):
        """Coupling halves: within each contiguous group the first gs/2 channels
        form half a, the last gs/2 half b."""
        B, C, T = u.shape
        v = u.reshape(B, G, 2, gs // 2, T)
        return v[:, :, 0].reshape(B, C // 2, T), v[:, :, 1].reshape(B, C // 2, T)

    def concat_groups(self, a, b, G, gs):
        B, H, T = a.shape
        v = self.jnp.stack([a.reshape(B, G, gs // 2, T), b.reshape(B, G, gs // 2, T)], axis=2)
        return v.reshape(B, 2 * H, T)

    def split_channels(self, h, n):
        return h[:, :n], h[:, n:]

    def concat_channels(self, a, b):
        return self.jnp.concatenate([a, b], axis=1)

    def squeeze_time(self, z, C):
        B, _, T = z.shape
        return z.reshape(B, C, T // 2, 2).transpose(0, 1, 3, 2).reshape(B, 2 * C, T // 2)

    def unsqueeze_time(self, u, C):
        B, _, T2 = u.shape
        return u.reshape(B, C, 2, T2).transpose(0, 1, 3, 2).reshape(B, C, 2 * T2)

    def sum_per_example(self, x):
        return self.jnp.sum(x, axis=(1, 2))

    def broadcast_time(self, v, like):
        """v [B] as a channel [B, 1, T] constant in time, T that of `like` [B, C, T]."""
        return v[:, None, None] * self.jnp.ones((1, 1, like.shape[-1]), like.dtype)

    def time_len(self, u):
        return float(u.shape[-1])


class OnnxOps:
    """Builds an ONNX graph; every method returns the name of a tensor."""

    def __init__(self, inputs=()):
        """`inputs`: the graph's input names, which no constant may take (a constant named like
        the per-bin `sigma` gets a suffix when the graph has an input `sigma`)."""
        import onnx
        from onnx import helper
        self.onnx = onnx
        self.helper = helper
        self.nodes = []
        self.inits = {}
        self.reserved = set(inputs)
        self.taken = set()   # node outputs so far
        self.n = 0

    def _name(self, base):
        """A new tensor or node name, never a constant's (constants named `shape` get suffixes
        too, and a Shape node's output is `shape_<n>`)."""
        self.n += 1
        while f"{base}_{self.n}" in self.inits:
            self.n += 1
        return f"{base}_{self.n}"

    def node(self, op, inputs, n_out=1, **attrs):
        outs = [self._name(op.lower()) for _ in range(n_out)]
        self.taken.update(outs)
        self.nodes.append(self.helper.make_node(op, inputs, outs, name=self._name('n_' + op), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, name, arr):
        arr = np.asarray(arr)
        if arr.dtype.kind == 'f':
            arr = arr.astype(np.float32)
        base = name
        i = 0
        while name in self.inits or name in self.reserved or name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.inits[name] = self.onnx.numpy_helper.from_array(arr, name=name)
        return name

    def _i64(self, vals):
        return self.const('shape', np.asarray(vals, dtype=np.int64))

    def add(self, a, b):
        return self.node('Add', [a, b])

    def sub(self, a, b):
        return self.node('Sub', [a, b])

    def mul(self, a, b):
        return self.node('Mul', [a, b])

    def neg(self, a):
        return self.node('Neg', [a])

    def exp(self, a):
        return self.node('Exp', [a])

    def log(self, a):
        return self.node('Log', [a])

    def tanh(self, a):
        return self.node('Tanh', [a])

    def relu(self, a):
        return self.node('Relu', [a])

    def positive_mask(self, a):
        zero = self.const('zero', np.zeros((), np.float32))
        one = self.const('one', np.ones((), np.float32))
        return self.node('Where', [self.node('Greater', [a, zero]), one, zero])

    def maximum(self, a, c):
        return self.node('Max', [a, self.const('floor', np.asarray(c, np.float32))])

    def clip(self, a, lo, hi):
        return self.node('Clip', [a, self.const('clip_lo', np.asarray(lo, np.float32)),
                                  self.const('clip_hi', np.asarray(hi, np.float32))])

    def abs(self, a):
        return self.node('Abs', [a])

    def sign(self, a):
        return self.node('Sign', [a])

    def log_softmax_channels(self, a):
        return self.node('LogSoftmax', [a], axis=1)

    def sum_channels(self, a):
        return self.node('ReduceSum', [a, self._i64([1])], keepdims=1)

    def shift_right(self, a):
        padded = self.node('Pad', [a, self._i64([0, 0, 1, 0, 0, 0])])
        return self.node('Slice', [padded, self._i64([0]), self._i64([-1]), self._i64([2])])

    def shift_left(self, a):
        padded = self.node('Pad', [a, self._i64([0, 0, 0, 0, 0, 1])])
        return self.node('Slice', [padded, self._i64([1]), self._i64([2 ** 62]), self._i64([2])])

    def conv1d(self, x, w, b, dilation):
        k = int(self.inits[w].dims[-1])
        p = dilation * (k - 1) // 2
        ins = [x, w] + ([b] if b is not None else [])
        return self.node('Conv', ins, kernel_shape=[k], dilations=[dilation], pads=[p, p],
                         strides=[1], group=1)

    def conv1d_adjoint(self, g, w, dilation):
        k = int(self.inits[w].dims[-1])
        p = dilation * (k - 1) // 2
        return self.node('ConvTranspose', [g, w], kernel_shape=[k], dilations=[dilation],
                         pads=[p, p], strides=[1], group=1)

    def group_matmul(self, u, w, transpose=False):
        """w is the name of a Conv weight [G*gs, gs, 1] (see glow.group_conv_weight)."""
        dims = list(self.inits[w].dims)
        G = dims[0] // dims[1]
        op = 'ConvTranspose' if transpose else 'Conv'
        return self.node(op, [u, w], kernel_shape=[1], strides=[1], pads=[0, 0], group=G)

    def split_groups(self, u, G, gs):
        v = self.node('Reshape', [u, self._i64([0, G, 2, gs // 2, -1])])
        a, b = self.node('Split', [v, self._i64([1, 1])], n_out=2, axis=2)
        shp = self._i64([0, G * gs // 2, -1])
        return self.node('Reshape', [a, shp]), self.node('Reshape', [b, shp])

    def concat_groups(self, a, b, G, gs):
        shp = self._i64([0, G, 1, gs // 2, -1])
        v = self.node('Concat', [self.node('Reshape', [a, shp]), self.node('Reshape', [b, shp])], axis=2)
        return self.node('Reshape', [v, self._i64([0, G * gs, -1])])

    def split_channels(self, h, n):
        return tuple(self.node('Split', [h, self._i64([n, n])], n_out=2, axis=1))

    def concat_channels(self, a, b):
        return self.node('Concat', [a, b], axis=1)

    def squeeze_time(self, z, C):
        v = self.node('Reshape', [z, self._i64([0, C, -1, 2])])
        v = self.node('Transpose', [v], perm=[0, 1, 3, 2])
        return self.node('Reshape', [v, self._i64([0, 2 * C, -1])])

    def unsqueeze_time(self, u, C):
        v = self.node('Reshape', [u, self._i64([0, C, 2, -1])])
        v = self.node('Transpose', [v], perm=[0, 1, 3, 2])
        return self.node('Reshape', [v, self._i64([0, C, -1])])

    def sum_per_example(self, x):
        return self.node('ReduceSum', [x, self._i64([1, 2])], keepdims=0)

    def broadcast_time(self, v, like):
        v3 = self.node('Reshape', [v, self._i64([-1, 1, 1])])
        t = self.node('Shape', [like], start=2)
        shape = self.node('Concat', [self._i64([1, 1]), t], axis=0)
        return self.node('Expand', [v3, shape])

    def time_len(self, u):
        shp = self.node('Shape', [u])
        t = self.node('Gather', [shp, self.const('idx2', np.asarray(2, np.int64))], axis=0)
        return self.node('Cast', [t], to=self.onnx.TensorProto.FLOAT)

    def build(self, name, inputs, outputs, doc=""):
        """inputs/outputs: list of (graph_name, tensor_name, shape) with shape using 'B', 'T'."""
        h = self.helper
        TP = self.onnx.TensorProto
        nodes = list(self.nodes)
        g_in, g_out = [], []
        for gname, tname, shape in inputs:
            g_in.append(h.make_tensor_value_info(gname, TP.FLOAT, shape))
            if tname != gname:
                raise ValueError("inputs must be created with input()")
        for gname, tname, shape in outputs:
            nodes.append(h.make_node('Identity', [tname], [gname], name=self._name('n_out')))
            g_out.append(h.make_tensor_value_info(gname, TP.FLOAT, shape))
        used = {i for nd in nodes for i in nd.input}
        inits = [t for n, t in self.inits.items() if n in used]
        graph = h.make_graph(nodes, name, g_in, g_out, initializer=inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid('', OPSET)],
                             producer_name='stemflow_training', doc_string=doc)
        model.ir_version = 9
        return model
