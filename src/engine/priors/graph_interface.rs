//! What a graph declares it takes and gives — its inputs' and outputs' names, element types and
//! shapes — read from the model's bytes or from a session, and checked against the contract for
//! the graph's role.
//!
//! Reading the bytes (ONNX's ModelProto.graph (7): GraphProto.input (11), .output (12),
//! .initializer (5) whose TensorProto.name is field 8; ValueInfoProto.name (1), .type (2);
//! TypeProto.tensor_type (1); TypeProto.Tensor.elem_type (1), .shape (2); TensorShapeProto.dim
//! (1); Dimension.dim_value (1)) lets a graph the search may never run be checked at load
//! without making a session for it. An input that is also an initializer is a weight with a
//! default, not an argument, and is left out, as ONNX Runtime leaves it out of a session's inputs.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::engine::constants::BINS;
use crate::engine::priors::onnx_wire::{FieldValue, Fields, OnnxReadError};
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::session_io::Role;

/// ONNX's TensorProto.DataType for float32.
const ONNX_FLOAT: u64 = 1;

/// The type a graph declares for one input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Declared {
    /// A float32 tensor; each dimension's size, or −1 where it is symbolic or unknown.
    Float32 {
        /// The dimensions, outermost first.
        dims: Vec<i64>,
    },
    /// Anything else, described for an error message.
    Other(String),
}

/// One named input or output of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outlet {
    /// The tensor's name.
    pub name: String,
    /// Its declared type.
    pub declared: Declared,
}

/// A graph's declared inputs and outputs, in the graph's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphInterface {
    /// The arguments a run must or may pass (initializers left out).
    pub inputs: Vec<Outlet>,
    /// What a run returns.
    pub outputs: Vec<Outlet>,
}

impl GraphInterface {
    /// The interface ONNX Runtime reports for `session`.
    pub fn of_session(session: &Session) -> GraphInterface {
        let outlet = |name: &str, dtype: &ValueType| Outlet {
            name: name.to_string(),
            declared: match dtype {
                ValueType::Tensor {
                    ty: TensorElementType::Float32,
                    shape,
                    ..
                } => Declared::Float32 {
                    dims: shape.iter().copied().collect(),
                },
                other => Declared::Other(format!("{other:?}")),
            },
        };
        GraphInterface {
            inputs: session
                .inputs()
                .iter()
                .map(|i| outlet(i.name(), i.dtype()))
                .collect(),
            outputs: session
                .outputs()
                .iter()
                .map(|o| outlet(o.name(), o.dtype()))
                .collect(),
        }
    }

    /// The interface the model in `bytes` declares, read without ONNX Runtime.
    pub fn of_bytes(bytes: &[u8]) -> Result<GraphInterface, OnnxReadError> {
        let mut interface = GraphInterface {
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        for field in Fields::new(bytes, 0) {
            if let Some((7, start, end)) = delimited(field?) {
                interface.read_graph(&bytes[start..end], start)?;
            }
        }
        Ok(interface)
    }

    /// Adds the inputs and outputs of the GraphProto `bytes` (at `base` in the file).
    fn read_graph(&mut self, bytes: &[u8], base: usize) -> Result<(), OnnxReadError> {
        let mut initializers = Vec::new();
        for field in Fields::new(bytes, base) {
            let Some((number, start, end)) = delimited(field?) else {
                continue;
            };
            let payload = &bytes[start..end];
            match number {
                5 => initializers.push(tensor_name(payload, base + start)?),
                11 => self.inputs.push(value_info(payload, base + start)?),
                12 => self.outputs.push(value_info(payload, base + start)?),
                _ => {}
            }
        }
        self.inputs.retain(|input| !initializers.contains(&input.name));
        Ok(())
    }

    /// The names of the outputs, in order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|o| o.name.as_str())
    }

    /// The names of the inputs, in order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.name.as_str())
    }

    /// `Ok` if the interface has every input and output the contract requires of `role`, each a
    /// float32 tensor of the contract's rank with the role's channels on axis 1 of a rank-3
    /// tensor, and no input the role does not allow; else the first difference.
    pub fn check(&self, role: Role) -> Result<(), PriorError> {
        let graph = role.name();
        let interface_error = |tensor: &str, expected: String, found: String| PriorError::GraphInterface {
            graph,
            tensor: tensor.to_string(),
            expected,
            found,
        };
        if !role.extra_inputs_allowed() {
            for input in &self.inputs {
                if !role.inputs().iter().any(|(name, _)| *name == input.name) {
                    let allowed: Vec<_> = role.inputs().iter().map(|(n, _)| format!("`{n}`")).collect();
                    return Err(interface_error(
                        &input.name,
                        format!("only inputs {}", allowed.join(", ")),
                        "an extra input".into(),
                    ));
                }
            }
        }
        let sides = [
            ("input", role.inputs(), &self.inputs),
            ("output", role.outputs(), &self.outputs),
        ];
        for (side, required, declared) in sides {
            for (name, rank) in required {
                let Some(outlet) = declared.iter().find(|o| o.name == *name) else {
                    return Err(interface_error(
                        name,
                        format!("an {side} `{name}`"),
                        "none".into(),
                    ));
                };
                let expected = format!("a float32 tensor of rank {rank}");
                let dims = match &outlet.declared {
                    Declared::Float32 { dims } => dims,
                    Declared::Other(other) => return Err(interface_error(name, expected, other.clone())),
                };
                if dims.len() != *rank {
                    return Err(interface_error(
                        name,
                        expected,
                        format!("rank {} ({dims:?})", dims.len()),
                    ));
                }
                let channels = role.channels();
                if *rank == 3 && dims[1] != channels as i64 && dims[1] >= 0 {
                    let axis = if channels == BINS { "bins" } else { "channel" };
                    return Err(interface_error(
                        name,
                        format!("{channels} {axis} on axis 1"),
                        format!("{}", dims[1]),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The number and byte range of a length-delimited field, or None for any other.
fn delimited(field: crate::engine::priors::onnx_wire::Field) -> Option<(u64, usize, usize)> {
    match field.value {
        FieldValue::Bytes(start, end) => Some((field.number, start, end)),
        _ => None,
    }
}

/// The bytes of a string field as text (ONNX names are UTF-8).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TensorProto's name (field 8).
fn tensor_name(bytes: &[u8], base: usize) -> Result<String, OnnxReadError> {
    let mut name = String::new();
    for field in Fields::new(bytes, base) {
        if let Some((8, start, end)) = delimited(field?) {
            name = text(&bytes[start..end]);
        }
    }
    Ok(name)
}

/// A ValueInfoProto: its name (1) and type (2).
fn value_info(bytes: &[u8], base: usize) -> Result<Outlet, OnnxReadError> {
    let mut name = String::new();
    let mut declared = Declared::Other("no type".into());
    for field in Fields::new(bytes, base) {
        match delimited(field?) {
            Some((1, start, end)) => name = text(&bytes[start..end]),
            Some((2, start, end)) => declared = type_proto(&bytes[start..end], base + start)?,
            _ => {}
        }
    }
    Ok(Outlet { name, declared })
}

/// A TypeProto: a tensor type (1) is read; any other kind is described.
fn type_proto(bytes: &[u8], base: usize) -> Result<Declared, OnnxReadError> {
    let mut declared = Declared::Other("a type that is not a tensor".into());
    for field in Fields::new(bytes, base) {
        if let Some((1, start, end)) = delimited(field?) {
            declared = tensor_type(&bytes[start..end], base + start)?;
        }
    }
    Ok(declared)
}

/// A TypeProto.Tensor: its element type (1) and shape (2).
fn tensor_type(bytes: &[u8], base: usize) -> Result<Declared, OnnxReadError> {
    let mut elem_type = 0;
    let mut dims = Vec::new();
    for field in Fields::new(bytes, base) {
        let field = field?;
        match (field.number, field.value) {
            (1, FieldValue::Varint(value)) => elem_type = value,
            (2, FieldValue::Bytes(start, end)) => dims = shape(&bytes[start..end], base + start)?,
            _ => {}
        }
    }
    Ok(if elem_type == ONNX_FLOAT {
        Declared::Float32 { dims }
    } else {
        Declared::Other(format!("a tensor of ONNX element type {elem_type}"))
    })
}

/// A TensorShapeProto: each Dimension (1), its dim_value (1) or −1 when symbolic or unknown.
fn shape(bytes: &[u8], base: usize) -> Result<Vec<i64>, OnnxReadError> {
    let mut dims = Vec::new();
    for field in Fields::new(bytes, base) {
        let Some((1, start, end)) = delimited(field?) else {
            continue;
        };
        let mut size = -1;
        for part in Fields::new(&bytes[start..end], base + start) {
            let part = part?;
            if let (1, FieldValue::Varint(value)) = (part.number, part.value) {
                size = value as i64;
            }
        }
        dims.push(size);
    }
    Ok(dims)
}
