//! Writing a change to an existing object as Kyma's RBAC for the agent allows
//! it: read the object, change the fields the agent owns, and replace it
//! (`update`, guarded by the resourceVersion it was read at). Kyma grants the
//! original agent get, create, update and delete, never patch; this agent's
//! own RBAC grants the same, so there is one way to write, tested under both.
//!
//! The object is read and written as JSON (`DynamicObject`), not as our Rust
//! types, so fields that the cluster's CRD has and our types lack survive a
//! replace.

use serde_json::Value;

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

/// How often a replace is tried again when the object changed between the
/// read and the write (409 Conflict).
pub const CONFLICT_RETRIES: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
