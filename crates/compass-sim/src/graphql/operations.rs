//! Finds the top-level fields a GraphQL request asks for, so faults and the
//! request log can be keyed by operation before the request runs.

use async_graphql_parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};

/// The top-level field names of the operation that would run (all operations'
/// when it is ambiguous); empty when the query does not parse.
pub fn top_level_fields(query: &str, operation_name: Option<&str>) -> Vec<String> {
    let Ok(doc) = async_graphql_parser::parse_query(query) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut visit = |op: &OperationDefinition| collect(&doc, &op.selection_set.node, &mut out, 0);
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => visit(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            if let Some(op) = ops
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, op)| op)
            {
                visit(&op.node)
            }
        }
        (DocumentOperations::Multiple(ops), None) => {
            for op in ops.values() {
                visit(&op.node)
            }
        }
    }
    out
}

fn collect(doc: &ExecutableDocument, set: &SelectionSet, out: &mut Vec<String>, depth: usize) {
    // Fragments can only nest so far in a valid document; this stops cycles.
    if depth > 16 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let name = field.node.name.node.to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Selection::InlineFragment(fragment) => {
                collect(doc, &fragment.node.selection_set.node, out, depth + 1)
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                    collect(doc, &fragment.node.selection_set.node, out, depth + 1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fields_of_a_simple_query() {
        assert_eq!(
            top_level_fields("query { configuration { token { token } } }", None),
            vec!["configuration"]
        );
        assert_eq!(
            top_level_fields(
                "mutation M($csr: String!) { result: signCertificateSigningRequest(csr: $csr) { caCertificate } }",
                None
            ),
            vec!["signCertificateSigningRequest"]
        );
    }

    #[test]
    fn picks_the_named_operation_and_follows_fragments() {
        let query = r#"
            query A { runtime(id: "x") { id } }
            query B { ...F }
            fragment F on Query { applicationsForRuntime(runtimeID: "x") { totalCount } }
        "#;
        assert_eq!(
            top_level_fields(query, Some("B")),
            vec!["applicationsForRuntime"]
        );
        assert_eq!(top_level_fields(query, Some("A")), vec!["runtime"]);
    }

    #[test]
    fn unparsable_queries_have_no_fields() {
        assert!(top_level_fields("{ nope", None).is_empty());
    }
}
