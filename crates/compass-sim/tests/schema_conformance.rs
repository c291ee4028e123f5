//! Every type, field and argument compass-sim serves exists in the real
//! Compass schemas with the same type (and the same argument defaults).

use std::collections::HashMap;
use std::path::PathBuf;

use async_graphql_parser::types::{
    FieldDefinition, InputValueDefinition, TypeDefinition, TypeKind, TypeSystemDefinition,
};

const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

fn real_schema(file: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compass-api");
    let path = dir.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the real Compass schema {} cannot be read ({e}): this test checks against it",
            path.display()
        )
    })
}

fn types(sdl: &str, what: &str) -> HashMap<String, TypeDefinition> {
    let doc = async_graphql_parser::parse_schema(sdl)
        .unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    doc.definitions
        .into_iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) => Some(t.node),
            _ => None,
        })
        .map(|t| (t.name.node.to_string(), t))
        .collect()
}

fn kind_name(kind: &TypeKind) -> &'static str {
    match kind {
        TypeKind::Scalar => "scalar",
        TypeKind::Object(_) => "type",
        TypeKind::Interface(_) => "interface",
        TypeKind::Union(_) => "union",
        TypeKind::Enum(_) => "enum",
        TypeKind::InputObject(_) => "input",
    }
}

fn compare_arguments(
    at: &str,
    ours: &[async_graphql_parser::Positioned<InputValueDefinition>],
    theirs: &[async_graphql_parser::Positioned<InputValueDefinition>],
    problems: &mut Vec<String>,
) {
    for arg in ours {
        let arg = &arg.node;
        let name = arg.name.node.as_str();
        let Some(real) = theirs.iter().find(|a| a.node.name.node.as_str() == name) else {
            problems.push(format!("{at}: argument {name} does not exist in Compass"));
            continue;
        };
        let (ours_ty, real_ty) = (arg.ty.node.to_string(), real.node.ty.node.to_string());
        if ours_ty != real_ty {
            problems.push(format!(
                "{at}({name}): type {ours_ty}, Compass has {real_ty}"
            ));
        }
        let default =
            |v: &InputValueDefinition| v.default_value.as_ref().map(|d| d.node.to_string());
        if default(arg) != default(&real.node) {
            problems.push(format!(
                "{at}({name}): default {:?}, Compass has {:?}",
                default(arg),
                default(&real.node)
            ));
        }
    }
    // An argument Compass requires (non-null, no default) must be served too.
    for real in theirs {
        let real = &real.node;
        if !real.ty.node.nullable
            && real.default_value.is_none()
            && !ours.iter().any(|a| a.node.name.node == real.name.node)
        {
            problems.push(format!(
                "{at}: required argument {} is missing",
                real.name.node
            ));
        }
    }
}

fn compare_fields(
    type_name: &str,
    ours: &[async_graphql_parser::Positioned<FieldDefinition>],
    theirs: &[async_graphql_parser::Positioned<FieldDefinition>],
    problems: &mut Vec<String>,
) {
    for field in ours {
        let field = &field.node;
        let name = field.name.node.as_str();
        let at = format!("{type_name}.{name}");
        let Some(real) = theirs.iter().find(|f| f.node.name.node.as_str() == name) else {
            problems.push(format!("{at} does not exist in Compass"));
            continue;
        };
        let (ours_ty, real_ty) = (field.ty.node.to_string(), real.node.ty.node.to_string());
        if ours_ty != real_ty {
            problems.push(format!("{at}: type {ours_ty}, Compass has {real_ty}"));
        }
        compare_arguments(&at, &field.arguments, &real.node.arguments, problems);
    }
}

/// Problems of `ours` against `theirs`, and how many types were compared.
fn conformance(ours: &str, theirs: &str, what: &str) -> (Vec<String>, usize) {
    let ours = types(ours, &format!("compass-sim's {what} SDL"));
    let theirs = types(theirs, &format!("Compass's {what} schema"));
    let mut problems = Vec::new();
    let mut compared = 0;
    for (name, ty) in &ours {
        if BUILT_IN_SCALARS.contains(&name.as_str()) || name.starts_with("__") {
            continue;
        }
        compared += 1;
        let Some(real) = theirs.get(name) else {
            problems.push(format!("{what}: type {name} does not exist in Compass"));
            continue;
        };
        match (&ty.kind, &real.kind) {
            (TypeKind::Scalar, TypeKind::Scalar) => {}
            (TypeKind::Object(o), TypeKind::Object(r)) => {
                compare_fields(name, &o.fields, &r.fields, &mut problems);
                for i in &o.implements {
                    if !r.implements.iter().any(|x| x.node == i.node) {
                        problems.push(format!("{name} implements {}, Compass's does not", i.node));
                    }
                }
            }
            (TypeKind::Interface(o), TypeKind::Interface(r)) => {
                compare_fields(name, &o.fields, &r.fields, &mut problems)
            }
            (TypeKind::Union(o), TypeKind::Union(r)) => {
                for m in &o.members {
                    if !r.members.iter().any(|x| x.node == m.node) {
                        problems.push(format!(
                            "union {name}: member {} is not in Compass's",
                            m.node
                        ));
                    }
                }
            }
            (TypeKind::Enum(o), TypeKind::Enum(r)) => {
                for v in &o.values {
                    if !r
                        .values
                        .iter()
                        .any(|x| x.node.value.node == v.node.value.node)
                    {
                        problems.push(format!(
                            "enum {name}: value {} is not in Compass's",
                            v.node.value.node
                        ));
                    }
                }
            }
            (TypeKind::InputObject(o), TypeKind::InputObject(r)) => {
                compare_arguments(name, &o.fields, &r.fields, &mut problems)
            }
            (o, r) => problems.push(format!(
                "{name} is a {} here but a {} in Compass",
                kind_name(o),
                kind_name(r)
            )),
        }
    }
    (problems, compared)
}

fn assert_conforms(ours: String, file: &str, what: &str, must_have: &[&str]) {
    let theirs = real_schema(file);
    for name in must_have {
        assert!(
            ours.contains(name),
            "compass-sim's {what} SDL lacks {name}:\n{ours}"
        );
    }
    let (problems, compared) = conformance(&ours, &theirs, what);
    assert!(
        problems.is_empty(),
        "compass-sim's {what} schema differs from Compass's {file}:\n  {}\n\ncompass-sim's SDL:\n{ours}",
        problems.join("\n  ")
    );
    println!("{what}: {compared} types conform to {file}");
}

#[test]
#[cfg_attr(
    shared_reference_absent,
    ignore = "../shared/compass-api (the real Compass schemas) is absent; with CI set this test runs and fails"
)]
fn the_connector_schema_is_a_subset_of_compass() {
    assert_conforms(
        compass_sim::connector_sdl(),
        "connector.graphql",
        "Connector",
        &[
            "configuration",
            "signCertificateSigningRequest",
            "revokeCertificate",
        ],
    );
}

#[test]
#[cfg_attr(
    shared_reference_absent,
    ignore = "../shared/compass-api (the real Compass schemas) is absent; with CI set this test runs and fails"
)]
fn the_director_schema_is_a_subset_of_compass() {
    assert_conforms(
        compass_sim::director_sdl(),
        "director.graphql",
        "Director",
        &[
            "applicationsForRuntime",
            "setRuntimeLabel",
            "union CredentialData",
            "scalar PageCursor",
            "tokenEndpointURL",
        ],
    );
}

#[test]
fn the_comparison_catches_differences() {
    let theirs = "type Query { a(first: Int = 200): Page! b: String }\ntype Page { x: Int! }";
    let ours = "type Query { a(first: Int! = 100, extra: Int): Page c: String }\ntype Page { x: Int! }\ntype Other { y: Int }";
    let (problems, _) = conformance(ours, theirs, "test");
    let text = problems.join("\n");
    for expected in [
        "Query.a: type Page, Compass has Page!",
        "Query.a(first): type Int!, Compass has Int",
        "Query.a(first): default Some(\"100\"), Compass has Some(\"200\")",
        "Query.a: argument extra does not exist",
        "Query.c does not exist",
        "type Other does not exist",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
