//! Writing a change to an existing object as Kyma's RBAC for the agent allows
//! it: read the object, change the fields the agent owns, and replace it
//! (`update`, guarded by the resourceVersion it was read at). Kyma grants the
//! original agent get, create, update and delete, never patch; this agent's
//! own RBAC grants the same, so there is one way to write, tested under both:
//! [`read_merge_replace`], for every object the agent changes (the connection
//! resource, the credential Secrets, the Applications).
//!
//! The object is read and written as JSON (`DynamicObject`), not as our Rust
//! types, so fields that the cluster's CRD has and our types lack survive a
//! replace.

use std::future::Future;

use serde_json::Value;

/// How often a write is tried in all when the object changed between the
/// read and the write (409 Conflict).
const CONFLICT_RETRIES: usize = 5;

/// Reads the object, merges the agent's change into it and replaces it at
/// the version read; when someone else wrote between the read and the
/// write (`is_conflict`), reads and merges again, [`CONFLICT_RETRIES`] tries
/// in all. `read` finds the object or `None`; a missing object is made by
/// `create` (tried again the same way, when someone else made it first).
/// A failed read ends it at once.
pub async fn read_merge_replace<K, T, E, Read, Replace, Create>(
    mut read: impl FnMut() -> Read,
    mut merge: impl FnMut(&mut K),
    mut replace: impl FnMut(K) -> Replace,
    mut create: impl FnMut() -> Create,
    is_conflict: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Read: Future<Output = Result<Option<K>, E>>,
    Replace: Future<Output = Result<T, E>>,
    Create: Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let written = match read().await? {
            Some(mut current) => {
                merge(&mut current);
                replace(current).await
            }
            None => create().await,
        };
        match written {
            Err(error) if tries < CONFLICT_RETRIES && is_conflict(&error) => {}
            done => return done,
        }
    }
}

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, `null`
/// removes a key, anything else replaces. What a `Patch::Merge` would do on
/// the server.
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above");
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            apply_merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    /// A store of one object (a version and a text) that answers a replace
    /// with a conflict while `conflicts` is above zero, as if someone else
    /// wrote between the read and the write.
    #[derive(Default)]
    struct Store {
        object: Option<(u32, String)>,
        conflicts: usize,
        reads: usize,
    }

    #[derive(Debug, PartialEq)]
    enum Failure {
        Conflict,
        Read,
    }

    /// The object "a" at version 1, whose next `conflicts` replaces conflict.
    fn object_a(conflicts: usize) -> RefCell<Store> {
        RefCell::new(Store {
            object: Some((1, "a".into())),
            conflicts,
            ..Store::default()
        })
    }

    async fn append(store: &RefCell<Store>, suffix: &str) -> Result<u32, Failure> {
        read_merge_replace(
            || async {
                let mut store = store.borrow_mut();
                store.reads += 1;
                Ok(store.object.clone())
            },
            |(_, text): &mut (u32, String)| text.push_str(suffix),
            |(version, text)| async move {
                let mut store = store.borrow_mut();
                if store.conflicts > 0 {
                    store.conflicts -= 1;
                    let (current, theirs) = store.object.as_mut().unwrap();
                    *current += 1;
                    theirs.push_str("+theirs");
                    return Err(Failure::Conflict);
                }
                let read_at = store.object.as_ref().unwrap().0;
                assert_eq!(read_at, version, "replaced at the version read");
                store.object = Some((version + 1, text));
                Ok(version + 1)
            },
            || async {
                store.borrow_mut().object = Some((1, suffix.to_string()));
                Ok(1)
            },
            |failure| *failure == Failure::Conflict,
        )
        .await
    }

    #[tokio::test]
    async fn a_conflict_reads_and_merges_again_into_the_newer_object() {
        let store = object_a(2);
        assert_eq!(append(&store, "+ours").await, Ok(4));
        let store = store.into_inner();
        assert_eq!(store.reads, 3);
        assert_eq!(store.object, Some((4, "a+theirs+theirs+ours".into())));
    }

    #[tokio::test]
    async fn the_conflict_is_returned_after_five_tries() {
        let store = object_a(100);
        assert_eq!(append(&store, "+ours").await, Err(Failure::Conflict));
        assert_eq!(store.into_inner().reads, 5);
    }

    #[tokio::test]
    async fn a_missing_object_is_created() {
        let store = RefCell::new(Store::default());
        assert_eq!(append(&store, "new").await, Ok(1));
        assert_eq!(store.into_inner().object, Some((1, "new".into())));
    }

    #[tokio::test]
    async fn a_failed_read_ends_it_at_once() {
        let reads = RefCell::new(0);
        let result: Result<(), Failure> = read_merge_replace(
            || async {
                *reads.borrow_mut() += 1;
                Err::<Option<()>, _>(Failure::Read)
            },
            |_| {},
            |_| async { Ok(()) },
            || async { Ok(()) },
            |_| true,
        )
        .await;
        assert_eq!(result, Err(Failure::Read));
        assert_eq!(reads.into_inner(), 1);
    }

    #[test]
    fn a_merge_patch_changes_only_the_keys_it_names() {
        let mut target = json!({
            "metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
            "spec": {"description": "old", "encodeUrl": true, "services": [{"id": "1"}]},
            "status": {"installationStatus": {"status": "deployed"}}
        });
        apply_merge_patch(
            &mut target,
            &json!({
                "metadata": {"labels": {"y": "3", "z": "4"}},
                "spec": {"description": "new", "services": [], "labels": null}
            }),
        );
        assert_eq!(
            target,
            json!({
                "metadata": {"name": "a", "labels": {"x": "1", "y": "3", "z": "4"}},
                "spec": {"description": "new", "encodeUrl": true, "services": []},
                "status": {"installationStatus": {"status": "deployed"}}
            })
        );
    }

    #[test]
    fn null_removes_and_a_non_object_replaces() {
        let mut target = json!({"a": {"b": 1}, "c": 2});
        apply_merge_patch(&mut target, &json!({"a": null, "c": {"d": 3}}));
        assert_eq!(target, json!({"c": {"d": 3}}));
        let mut scalar = json!(5);
        apply_merge_patch(&mut scalar, &json!({"e": null, "f": 1}));
        assert_eq!(scalar, json!({"f": 1}));
    }
}
