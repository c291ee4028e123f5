//! A metadata-only list page in Kubernetes' protobuf encoding, read as far as
//! the agent reads it.
//!
//! In JSON, every object's `managedFields` (a tree larger than the rest of
//! its metadata) must be scanned to be skipped; in protobuf it is skipped by
//! its length, unread. At 10,000 Applications and their 40,000 Secrets that
//! scanning was the largest part of the agent's CPU in an idle sync. The API
//! server serves `PartialObjectMetadataList` in protobuf for every resource,
//! custom ones included (client-go's metadata client, the garbage
//! collector's, asks for nothing else). The request still accepts JSON, and
//! an answer in JSON is read as before ([`is_protobuf`] tells them apart):
//! a server or a proxy that does not speak protobuf costs only the scanning.
//!
//! Only the fields the agent reads are declared; prost skips the others.
//! The field numbers are those of `k8s.io/apimachinery`'s `generated.proto`
//! (`pkg/apis/meta/v1` and, for the envelope, `pkg/runtime`).

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use crate::sync::actual::{ListedMetadata, OwnerUid, ReadMetadata};

/// The Accept header of a metadata-only list: protobuf first, JSON after.
pub const ACCEPT: &str = concat!(
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,",
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,",
    "application/json"
);

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf answer of the API server begins with these four bytes,
/// then a `runtime.Unknown` holding the object.
const PREFIX: &[u8] = b"k8s\0";

/// Whether an answer's `Content-Type` is Kubernetes' protobuf.
pub fn is_protobuf(content_type: Option<&http::HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(PROTOBUF))
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the answer does not begin with Kubernetes' protobuf prefix")]
    NoPrefix,
    #[error("the answer holds a {kind:?}, not a PartialObjectMetadataList")]
    NotAMetadataList { kind: String },
    #[error("the answer is not valid protobuf")]
    Protobuf(#[from] prost::DecodeError),
}

/// One page of a metadata-only list, as the agent reads it.
#[derive(Debug, Default)]
pub struct MetadataPage {
    pub items: Vec<ListedMetadata>,
    /// Where the next page begins; `None` on the last.
    pub continue_token: Option<String>,
    /// How many objects are still to come, when the server says.
    pub remaining_item_count: Option<i64>,
}

/// Reads a page from a protobuf answer (its body, prefix included).
pub fn decode_page(body: Bytes) -> Result<MetadataPage, DecodeError> {
    let (kind, raw) = open_envelope(body)?;
    if kind != "PartialObjectMetadataList" {
        return Err(DecodeError::NotAMetadataList { kind });
    }
    let list = PartialObjectMetadataList::decode(raw)?;
    let meta = list.metadata.unwrap_or_default();
    Ok(MetadataPage {
        items: list
            .items
            .into_iter()
            .map(|item| ListedMetadata::from(item.metadata.unwrap_or_default()))
            .collect(),
        continue_token: meta.continue_token.filter(|token| !token.is_empty()),
        remaining_item_count: meta.remaining_item_count,
    })
}

/// The `Status` of an error answer in protobuf, if it is one.
pub fn decode_status(body: Bytes) -> Option<kube::core::Status> {
    let (kind, raw) = open_envelope(body).ok()?;
    if kind != "Status" {
        return None;
    }
    let status = Status::decode(raw).ok()?;
    let code = status.code.and_then(|code| u16::try_from(code).ok())?;
    Some(
        kube::core::Status::failure(
            status.message.as_deref().unwrap_or_default(),
            status.reason.as_deref().unwrap_or_default(),
        )
        .with_code(code),
    )
}

/// The kind of the object an answer holds, and its encoding.
fn open_envelope(mut body: Bytes) -> Result<(String, Bytes), DecodeError> {
    if !body.starts_with(PREFIX) {
        return Err(DecodeError::NoPrefix);
    }
    let envelope = Unknown::decode(body.split_off(PREFIX.len()))?;
    let kind = envelope.type_meta.and_then(|meta| meta.kind);
    Ok((kind.unwrap_or_default(), envelope.raw.unwrap_or_default()))
}

/// Go writes a string field even when it is empty; JSON leaves it out.
/// Both read the same.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

impl From<ObjectMeta> for ListedMetadata {
    fn from(meta: ObjectMeta) -> ListedMetadata {
        ListedMetadata {
            metadata: ReadMetadata {
                name: non_empty(meta.name),
                uid: non_empty(meta.uid),
                resource_version: non_empty(meta.resource_version),
                labels: (!meta.labels.is_empty()).then_some(meta.labels),
                owner_references: (!meta.owner_references.is_empty()).then(|| {
                    meta.owner_references
                        .into_iter()
                        .map(|owner| OwnerUid {
                            uid: owner.uid.unwrap_or_default(),
                        })
                        .collect()
                }),
            },
        }
    }
}

/// `runtime.Unknown`: the envelope of every protobuf answer.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    raw: Option<Bytes>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct PartialObjectMetadataList {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ListMeta>,
    #[prost(message, repeated, tag = "2")]
    items: Vec<PartialObjectMetadata>,
}

#[derive(Clone, PartialEq, Message)]
struct ListMeta {
    #[prost(string, optional, tag = "3")]
    continue_token: Option<String>,
    #[prost(int64, optional, tag = "4")]
    remaining_item_count: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct PartialObjectMetadata {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

/// Of `ObjectMeta`, what the agent reads; `managedFields` (17) above all
/// is not declared, so never decoded.
#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(string, optional, tag = "3")]
    message: Option<String>,
    #[prost(string, optional, tag = "4")]
    reason: Option<String>,
    #[prost(int32, optional, tag = "6")]
    code: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta as JsonListMeta;
    use serde::Deserialize;

    // Pages of a real kube-apiserver (v1.37), each asked for once in protobuf
    // and once in JSON at the same moment: two Secrets (the first with the
    // agent's labels, an owner, an annotation and managedFields), one a
    // page; one Application.
    const SECRETS_PROTOBUF: &[u8] = include_bytes!("testdata/secrets-metadata-page.pb");
    const SECRETS_JSON: &[u8] = include_bytes!("testdata/secrets-metadata-page.json");
    const APPLICATIONS_PROTOBUF: &[u8] = include_bytes!("testdata/applications-metadata-page.pb");
    const APPLICATIONS_JSON: &[u8] = include_bytes!("testdata/applications-metadata-page.json");

    #[derive(Deserialize)]
    struct JsonPage {
        metadata: JsonListMeta,
        items: Vec<ListedMetadata>,
    }

    fn both(protobuf: &'static [u8], json: &[u8]) -> (MetadataPage, JsonPage) {
        let decoded = decode_page(Bytes::from_static(protobuf)).unwrap();
        (decoded, serde_json::from_slice(json).unwrap())
    }

    #[test]
    fn a_protobuf_page_reads_as_the_same_page_in_json() {
        for (protobuf, json) in [
            (SECRETS_PROTOBUF, SECRETS_JSON),
            (APPLICATIONS_PROTOBUF, APPLICATIONS_JSON),
        ] {
            let (decoded, expected) = both(protobuf, json);
            assert!(!decoded.items.is_empty());
            assert_eq!(decoded.items, expected.items);
            assert_eq!(decoded.continue_token, expected.metadata.continue_);
            assert_eq!(
                decoded.remaining_item_count,
                expected.metadata.remaining_item_count
            );
        }
    }

    #[test]
    fn what_the_agent_reads_of_a_secret_is_in_the_protobuf_page() {
        let (decoded, _) = both(SECRETS_PROTOBUF, SECRETS_JSON);
        let [secret] = &decoded.items[..] else {
            panic!("one Secret a page: {decoded:?}")
        };
        let meta = &secret.metadata;
        assert_eq!(meta.name.as_deref(), Some("shop-b-1"));
        assert_eq!(meta.resource_version.as_deref(), Some("243"));
        assert_eq!(
            meta.uid.as_deref(),
            Some("a422631b-13ab-4ac8-be8d-d369f59bdccb")
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels.get("bundleId").map(String::as_str), Some("b-1"));
        assert_eq!(labels.get("app").map(String::as_str), Some("shop"));
        assert_eq!(
            meta.owner_references.as_deref(),
            Some(
                &[OwnerUid {
                    uid: "d891b753-f809-4ea8-9f71-9bb0f18924f8".into()
                }][..]
            )
        );
        // The second Secret is on the next page.
        assert!(decoded.continue_token.is_some());
        assert_eq!(decoded.remaining_item_count, Some(1));
    }

    #[test]
    fn an_answer_that_is_not_a_protobuf_metadata_list_is_refused_with_what_it_is() {
        assert!(matches!(
            decode_page(Bytes::from_static(SECRETS_JSON)),
            Err(DecodeError::NoPrefix)
        ));
        let status = envelope("Status", &status_message(403, "forbidden"));
        assert!(matches!(
            decode_page(status),
            Err(DecodeError::NotAMetadataList { kind }) if kind == "Status"
        ));
        // Cut short, as by a connection closed mid-answer.
        let cut = Bytes::from_static(&SECRETS_PROTOBUF[..SECRETS_PROTOBUF.len() - 40]);
        assert!(matches!(decode_page(cut), Err(DecodeError::Protobuf(_))));
    }

    #[test]
    fn an_error_answer_in_protobuf_gives_its_status() {
        let status = decode_status(envelope(
            "Status",
            &status_message(403, "secrets is forbidden"),
        ))
        .unwrap();
        assert_eq!(status.code, 403);
        assert_eq!(status.message, "secrets is forbidden");
        assert_eq!(status.reason, "Forbidden");
        // A page is not a Status.
        assert!(decode_status(Bytes::from_static(SECRETS_PROTOBUF)).is_none());
    }

    #[test]
    fn only_kubernetes_protobuf_is_read_as_protobuf() {
        let is = |value: &'static str| is_protobuf(Some(&http::HeaderValue::from_static(value)));
        assert!(is("application/vnd.kubernetes.protobuf"));
        assert!(is("application/vnd.kubernetes.protobuf;stream=watch"));
        assert!(!is("application/json"));
        assert!(!is(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        ));
        assert!(!is_protobuf(None));
    }

    fn status_message(code: i32, message: &str) -> Vec<u8> {
        Status {
            message: Some(message.into()),
            reason: Some("Forbidden".into()),
            code: Some(code),
        }
        .encode_to_vec()
    }

    fn envelope(kind: &str, raw: &[u8]) -> Bytes {
        let mut body = PREFIX.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
            }),
            raw: Some(Bytes::copy_from_slice(raw)),
        }
        .encode(&mut body)
        .unwrap();
        Bytes::from(body)
    }
}
