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
//! Each object's metadata is read where it lies in the answer, borrowed, and
//! handed over as an [`ObjectMetadata`] for the caller to keep what it needs:
//! nothing is allocated for an object on the way (at 40,000 Secrets, a
//! dozen allocations an object was most of the list's cost). Only the fields
//! the agent reads are looked at; the field numbers are those of
//! `k8s.io/apimachinery`'s `generated.proto` (`pkg/apis/meta/v1` and, for
//! the envelope, `pkg/runtime`).

use bytes::Bytes;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;

use crate::sync::actual::{
    ActualSecret, ListedApplication, ListedMetadata, ListedSecret, OwnerUid, ReadMetadata,
    SecretLabels,
};
use crate::sync::compact::CompactText;

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
    #[error("the answer is not valid protobuf: {0}")]
    Malformed(&'static str),
}

/// Where a list goes on after a page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// The version of the whole list (every page's is the first's): a watch
    /// from it sees every change made after the list.
    pub resource_version: Option<String>,
    /// Where the next page begins; `None` on the last.
    pub continue_token: Option<String>,
    /// How many objects are still to come, when the server says.
    pub remaining_item_count: Option<i64>,
}

/// Reads a page from a protobuf answer (its body, prefix included), handing
/// each object's metadata to `each` in the order listed.
pub fn decode_page(
    body: Bytes,
    mut each: impl FnMut(ObjectMetadata<'_>),
) -> Result<PageEnd, DecodeError> {
    let (kind, raw) = open_envelope(body)?;
    if kind != "PartialObjectMetadataList" {
        return Err(DecodeError::NotAMetadataList { kind });
    }
    let mut end = PageEnd::default();
    // PartialObjectMetadataList: metadata = 1, items = 2.
    for field in Fields::of(&raw) {
        match field? {
            (1, Value::Bytes(bytes)) => {
                let meta = ListMeta::decode(bytes)?;
                end = PageEnd {
                    resource_version: meta.resource_version.filter(|version| !version.is_empty()),
                    continue_token: meta.continue_token.filter(|token| !token.is_empty()),
                    remaining_item_count: meta.remaining_item_count,
                };
            }
            (2, Value::Bytes(item)) => each(ObjectMetadata::of_item(item)?),
            _ => {}
        }
    }
    Ok(end)
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

/// The metadata of one listed object, borrowed from the answer: what the
/// agent reads of it. Go writes a string field even when it is empty, where
/// JSON leaves it out; both read the same here (`""` as absent).
#[derive(Clone, Copy, Debug)]
pub struct ObjectMetadata<'a> {
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub resource_version: Option<&'a str>,
    /// The `ObjectMeta` message, for its labels and owners; checked whole
    /// when the metadata was read.
    meta: &'a [u8],
}

impl<'a> ObjectMetadata<'a> {
    /// From a `PartialObjectMetadata` (metadata = 1).
    fn of_item(item: &'a [u8]) -> Result<ObjectMetadata<'a>, DecodeError> {
        let mut meta: &[u8] = &[];
        for field in Fields::of(item) {
            if let (1, Value::Bytes(bytes)) = field? {
                meta = bytes;
            }
        }
        let mut read = ObjectMetadata {
            name: "",
            uid: None,
            resource_version: None,
            meta,
        };
        let non_empty = |text: &'a str| (!text.is_empty()).then_some(text);
        // ObjectMeta: name = 1, uid = 5, resourceVersion = 6, labels = 11,
        // ownerReferences = 13. Labels and owners are checked here, so that
        // reading them later cannot fail.
        for field in Fields::of(meta) {
            match field? {
                (1, Value::Bytes(bytes)) => read.name = text(bytes)?,
                (5, Value::Bytes(bytes)) => read.uid = non_empty(text(bytes)?),
                (6, Value::Bytes(bytes)) => read.resource_version = non_empty(text(bytes)?),
                (11, Value::Bytes(entry)) => {
                    map_entry(entry)?;
                }
                (13, Value::Bytes(owner)) => {
                    owner_uid(owner)?;
                }
                _ => {}
            }
        }
        Ok(read)
    }

    /// Its labels, in the order listed.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        self.fields_numbered(11)
            .filter_map(|entry| map_entry(entry).ok())
    }

    /// The labels the agent reads of a Secret.
    pub fn secret_labels(&self) -> SecretLabels<'a> {
        SecretLabels::of(self.labels())
    }

    /// The uids of its owners.
    pub fn owner_uids(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.fields_numbered(13)
            .filter_map(|owner| owner_uid(owner).ok())
    }

    fn fields_numbered(&self, number: u32) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        Fields::of(self.meta)
            .map_while(Result::ok)
            .filter_map(move |field| match field {
                (tag, Value::Bytes(bytes)) if tag == number => Some(bytes),
                _ => None,
            })
    }
}

impl From<ObjectMetadata<'_>> for ListedMetadata {
    fn from(meta: ObjectMetadata<'_>) -> ListedMetadata {
        let labels: std::collections::BTreeMap<String, String> = meta
            .labels()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let owners: Vec<OwnerUid> = meta
            .owner_uids()
            .map(|uid| OwnerUid { uid: uid.into() })
            .collect();
        ListedMetadata {
            metadata: ReadMetadata {
                name: (!meta.name.is_empty()).then(|| meta.name.to_string()),
                uid: meta.uid.map(String::from),
                resource_version: meta.resource_version.map(String::from),
                labels: (!labels.is_empty()).then_some(labels),
                owner_references: (!owners.is_empty()).then_some(owners),
            },
        }
    }
}

impl From<ObjectMetadata<'_>> for ListedSecret {
    fn from(meta: ObjectMetadata<'_>) -> ListedSecret {
        ListedSecret {
            summary: ActualSecret::of(meta.name, meta.secret_labels(), meta.owner_uids()),
            uid: meta.uid.map(CompactText::new),
            resource_version: meta.resource_version.map(CompactText::new),
        }
    }
}

impl From<ObjectMetadata<'_>> for ListedApplication {
    fn from(meta: ObjectMetadata<'_>) -> ListedApplication {
        ListedApplication {
            name: meta.name.into(),
            uid: meta.uid.map(String::from),
            resource_version: meta.resource_version.map(String::from),
        }
    }
}

/// A `map<string, string>` entry: key = 1, value = 2.
fn map_entry(entry: &[u8]) -> Result<(&str, &str), DecodeError> {
    let (mut key, mut value) = ("", "");
    for field in Fields::of(entry) {
        match field? {
            (1, Value::Bytes(bytes)) => key = text(bytes)?,
            (2, Value::Bytes(bytes)) => value = text(bytes)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// An `OwnerReference`'s uid = 4.
fn owner_uid(owner: &[u8]) -> Result<&str, DecodeError> {
    let mut uid = "";
    for field in Fields::of(owner) {
        if let (4, Value::Bytes(bytes)) = field? {
            uid = text(bytes)?;
        }
    }
    Ok(uid)
}

fn text(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed("a string that is not UTF-8"))
}

/// The fields of one protobuf message in order, each its number and, when
/// it is length-delimited (a string, a message, a map entry), its bytes.
/// Other fields are stepped over; after an error, it ends.
struct Fields<'a> {
    rest: &'a [u8],
}

enum Value<'a> {
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Fields<'a> {
    fn of(message: &'a [u8]) -> Fields<'a> {
        Fields { rest: message }
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), DecodeError> {
        let (number, wire_type) = decode_key(&mut self.rest)?;
        let value = match wire_type {
            WireType::Varint => {
                decode_varint(&mut self.rest)?;
                Value::Other
            }
            WireType::SixtyFourBit => self.skip(8).map(|_| Value::Other)?,
            WireType::ThirtyTwoBit => self.skip(4).map(|_| Value::Other)?,
            WireType::LengthDelimited => {
                let length = decode_varint(&mut self.rest)?;
                Value::Bytes(self.skip(usize::try_from(length).unwrap_or(usize::MAX))?)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(DecodeError::Malformed(
                    "a group, which Kubernetes never writes",
                ))
            }
        };
        Ok((number, value))
    }

    fn skip(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        if length > self.rest.len() {
            return Err(DecodeError::Malformed("a field longer than its message"));
        }
        let (bytes, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(bytes)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
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
struct ListMeta {
    #[prost(string, optional, tag = "2")]
    resource_version: Option<String>,
    #[prost(string, optional, tag = "3")]
    continue_token: Option<String>,
    #[prost(int64, optional, tag = "4")]
    remaining_item_count: Option<i64>,
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

    /// A protobuf page read into the owned form the JSON page is read into.
    fn decoded(protobuf: &'static [u8]) -> (Vec<ListedMetadata>, PageEnd) {
        let mut items = Vec::new();
        let end = decode_page(Bytes::from_static(protobuf), |meta| {
            items.push(ListedMetadata::from(meta))
        })
        .unwrap();
        (items, end)
    }

    #[test]
    fn a_protobuf_page_reads_as_the_same_page_in_json() {
        for (protobuf, json) in [
            (SECRETS_PROTOBUF, SECRETS_JSON),
            (APPLICATIONS_PROTOBUF, APPLICATIONS_JSON),
        ] {
            let (items, end) = decoded(protobuf);
            let expected: JsonPage = serde_json::from_slice(json).unwrap();
            assert!(!items.is_empty());
            assert_eq!(items, expected.items);
            assert_eq!(end.continue_token, expected.metadata.continue_);
            assert!(end.resource_version.is_some());
            assert_eq!(end.resource_version, expected.metadata.resource_version);
            assert_eq!(
                end.remaining_item_count,
                expected.metadata.remaining_item_count
            );
        }
    }

    #[test]
    fn what_the_agent_reads_of_a_secret_is_in_the_protobuf_page() {
        let (items, end) = decoded(SECRETS_PROTOBUF);
        let [secret] = &items[..] else {
            panic!("one Secret a page: {items:?}")
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
        assert!(end.continue_token.is_some());
        assert_eq!(end.remaining_item_count, Some(1));
    }

    #[test]
    fn summaries_made_from_the_borrowed_metadata_are_those_made_from_the_owned() {
        for protobuf in [SECRETS_PROTOBUF, APPLICATIONS_PROTOBUF] {
            let mut compared = 0;
            decode_page(Bytes::from_static(protobuf), |meta| {
                let owned = ListedMetadata::from(meta);
                let secret = ListedSecret::from(meta);
                let expected = ListedSecret::from(ListedMetadata::from(meta));
                assert_eq!(secret.summary, expected.summary, "{owned:?}");
                assert_eq!(
                    (secret.uid, secret.resource_version),
                    (expected.uid, expected.resource_version)
                );
                assert_eq!(
                    ListedApplication::from(meta),
                    ListedApplication::from(owned)
                );
                compared += 1;
            })
            .unwrap();
            assert!(compared > 0);
        }
        let mut secrets = Vec::new();
        decode_page(Bytes::from_static(SECRETS_PROTOBUF), |meta| {
            secrets.push(ListedSecret::from(meta))
        })
        .unwrap();
        let summary = &secrets[0].summary;
        assert_eq!(summary.name(), "shop-b-1");
        assert!(summary.is_the_agents());
        assert!(summary.is_owned_by("d891b753-f809-4ea8-9f71-9bb0f18924f8"));
        assert!(summary.has_managed_by_label);
        assert_eq!(summary.label("bundleId"), Some("b-1"));
    }

    #[test]
    fn an_answer_that_is_not_a_protobuf_metadata_list_is_refused_with_what_it_is() {
        assert!(matches!(
            decode_page(Bytes::from_static(SECRETS_JSON), |_| {}),
            Err(DecodeError::NoPrefix)
        ));
        let status = envelope("Status", &status_message(403, "forbidden"));
        assert!(matches!(
            decode_page(status, |_| {}),
            Err(DecodeError::NotAMetadataList { kind }) if kind == "Status"
        ));
        // Cut short, as by a connection closed mid-answer.
        let cut = Bytes::from_static(&SECRETS_PROTOBUF[..SECRETS_PROTOBUF.len() - 40]);
        assert!(matches!(
            decode_page(cut, |_| {}),
            Err(DecodeError::Protobuf(_) | DecodeError::Malformed(_))
        ));
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
