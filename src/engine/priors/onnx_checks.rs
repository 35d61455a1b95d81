//! Which files an ONNX graph reads its tensors from (ONNX "external data"), found by walking the
//! model's protobuf without a protobuf library.
//!
//! A prior's manifest lists and hashes every file it ships (CONTRACT.md "Shared weights"); ONNX
//! Runtime would load any file a graph names, so the engine checks that the graphs name no file
//! the manifest does not hash. Only the messages that can hold a tensor are walked (schema of
//! onnx.proto3): ModelProto.graph (7) and .functions (25); GraphProto.node (1), .initializer (5),
//! .sparse_initializer (15); FunctionProto.node (7), .attribute_proto (11); NodeProto.attribute
//! (5); AttributeProto.t (5), .g (6), .tensors (10), .graphs (11), .sparse_tensor (22),
//! .sparse_tensors (23);
//! SparseTensorProto.values (1), .indices (2); TensorProto.external_data (13), whose
//! StringStringEntryProto key (1) `location` has the file name in value (2).

use std::collections::BTreeSet;

pub use crate::engine::priors::onnx_wire::OnnxReadError;
use crate::engine::priors::onnx_wire::{FieldValue, Fields, MAX_DEPTH};

/// The message types walked (see the module doc for their field numbers).
#[derive(Clone, Copy)]
enum Message {
    Model,
    Graph,
    Function,
    Node,
    Attribute,
    SparseTensor,
    Tensor,
    StringEntry,
}

/// Every distinct `location` of external data named by any tensor of the model in `bytes`.
pub fn external_data_locations(bytes: &[u8]) -> Result<BTreeSet<String>, OnnxReadError> {
    let mut found = BTreeSet::new();
    walk(bytes, 0, Message::Model, 0, &mut found)?;
    Ok(found)
}

fn walk(
    bytes: &[u8],
    base: usize,
    message: Message,
    depth: usize,
    found: &mut BTreeSet<String>,
) -> Result<(), OnnxReadError> {
    if depth > MAX_DEPTH {
        return Err(OnnxReadError {
            offset: base,
            reason: "messages nested too deeply",
        });
    }
    let mut entry_key: Option<&[u8]> = None;
    let mut entry_value: Option<&[u8]> = None;
    for field in Fields::new(bytes, base) {
        let field = field?;
        let FieldValue::Bytes(start, end) = field.value else {
            continue;
        };
        let payload = &bytes[start..end];
        let child = match (message, field.number) {
            (Message::Model, 7) => Some(Message::Graph),
            (Message::Model, 25) => Some(Message::Function),
            (Message::Graph, 1) | (Message::Function, 7) => Some(Message::Node),
            (Message::Function, 11) => Some(Message::Attribute),
            (Message::Graph, 5) => Some(Message::Tensor),
            (Message::Graph, 15) => Some(Message::SparseTensor),
            (Message::Node, 5) => Some(Message::Attribute),
            (Message::Attribute, 5 | 10) => Some(Message::Tensor),
            (Message::Attribute, 6 | 11) => Some(Message::Graph),
            (Message::Attribute, 22 | 23) => Some(Message::SparseTensor),
            (Message::SparseTensor, 1 | 2) => Some(Message::Tensor),
            (Message::Tensor, 13) => Some(Message::StringEntry),
            (Message::StringEntry, 1) => {
                entry_key = Some(payload);
                None
            }
            (Message::StringEntry, 2) => {
                entry_value = Some(payload);
                None
            }
            _ => None,
        };
        if let Some(child) = child {
            walk(payload, base + start, child, depth + 1, found)?;
        }
    }
    if let (Message::StringEntry, Some(b"location")) = (message, entry_key) {
        let value = entry_value.unwrap_or_default();
        found.insert(String::from_utf8_lossy(value).into_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::priors::onnx_wire::encode::{field, model, varint_bytes};

    fn external_tensor(location: &str) -> Vec<u8> {
        let mut entry = field(1, b"location");
        entry.extend(field(2, location.as_bytes()));
        let mut offset = field(1, b"offset");
        offset.extend(field(2, b"0"));
        let mut tensor = field(8, b"w"); // name
        tensor.extend(varint_bytes(14 << 3)); // data_location = EXTERNAL (varint field)
        tensor.push(1);
        tensor.extend(field(13, &offset));
        tensor.extend(field(13, &entry));
        tensor
    }

    #[test]
    fn initializers_and_constant_attributes_are_found() {
        let mut graph = field(5, &external_tensor("weights.bin"));
        let attribute = field(5, &external_tensor("other.bin"));
        graph.extend(field(1, &field(5, &attribute))); // node { attribute { t } }
        let locations = external_data_locations(&model(&graph)).unwrap();
        assert_eq!(
            locations.into_iter().collect::<Vec<_>>(),
            ["other.bin", "weights.bin"]
        );
    }

    #[test]
    fn subgraphs_and_sparse_initializers_are_found() {
        let inner = field(5, &external_tensor("inner.bin"));
        let node = field(5, &field(6, &inner)); // node { attribute { g { initializer } } }
        let mut graph = field(1, &node);
        graph.extend(field(15, &field(1, &external_tensor("sparse.bin"))));
        let locations = external_data_locations(&model(&graph)).unwrap();
        assert!(locations.contains("inner.bin") && locations.contains("sparse.bin"));
    }

    #[test]
    fn repeated_tensor_and_graph_attributes_and_function_attributes_are_found() {
        // onnx.proto3: AttributeProto.tensors = 10, .graphs = 11; FunctionProto.attribute_proto = 11.
        let listed = field(10, &external_tensor("in-tensors.bin"));
        let subgraph = field(11, &field(5, &external_tensor("in-graphs.bin")));
        let mut node = field(5, &listed);
        node.extend(field(5, &subgraph));
        let mut out = model(&field(1, &node));
        let function_attribute = field(5, &external_tensor("function-default.bin"));
        out.extend(field(25, &field(11, &function_attribute))); // functions { attribute_proto { t } }
        let locations = external_data_locations(&out).unwrap();
        assert_eq!(
            locations.into_iter().collect::<Vec<_>>(),
            ["function-default.bin", "in-graphs.bin", "in-tensors.bin"]
        );
    }

    #[test]
    fn embedded_weights_name_no_file() {
        let mut tensor = field(8, b"w");
        tensor.extend(field(9, &[0u8; 16])); // raw_data
        assert!(external_data_locations(&model(&field(5, &tensor)))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn truncated_or_foreign_bytes_are_errors() {
        let good = model(&field(5, &external_tensor("weights.bin")));
        let error = external_data_locations(&good[..good.len() - 3]).unwrap_err();
        assert_eq!(error.reason, "a field running past the end of its message");
        assert!(external_data_locations(b"\x0b\x00").is_err()); // wire type 3 (group)
        assert!(external_data_locations(&[0xff; 11]).is_err()); // varint too long
    }
}
