//! The Director's answers of the last sync, remembered by digest: an
//! application whose answer is byte for byte the last one, under the same
//! conversion settings, wants what it wanted then, so an idle sync need not
//! parse and convert it again. Only its id and name are read (by the
//! Director's client, `compass::director::Arrival`); whether the
//! cluster still holds what it wants is one comparison of [`WantedDigest`]s.
//!
//! Each remembered answer costs 40 bytes (two digests); the Director's
//! answers themselves are never kept. A remembered answer never writes
//! anything: it only settles an application the cluster already holds
//! exactly. Anything else (a new or changed answer, a cluster that moved, an
//! answer that needed more pages) takes the whole way: parse, convert, hold.

use sha1::{Digest, Sha1};

use super::actual::ActualIndex;
use super::convert::ConversionSettings;
use super::digest::{OwnedDigest, SecretFacts, WantedDigest};
use super::wanted::{Content, HeldApplication, WantedApplication};
use crate::crd::labels::{SECRET_APP_LABEL, SECRET_BUNDLE_LABEL};

/// The digest of one application's answer text and of the settings it is
/// converted with: equal digests, equal wanted state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AnswerDigest([u8; 20]);

/// The bytes' order, compared a word at a time: the record of 10,000
/// answers is searched once for each answer of a sync, and an array of bytes
/// compares through a call to `memcmp`.
impl Ord for AnswerDigest {
    fn cmp(&self, other: &AnswerDigest) -> std::cmp::Ordering {
        fn words(digest: &[u8; 20]) -> (u64, u64, u32) {
            let (first, rest) = digest.split_at(8);
            let (second, last) = rest.split_at(8);
            (
                u64::from_be_bytes(first.try_into().unwrap_or_default()),
                u64::from_be_bytes(second.try_into().unwrap_or_default()),
                u32::from_be_bytes(last.try_into().unwrap_or_default()),
            )
        }
        words(&self.0).cmp(&words(&other.0))
    }
}

impl PartialOrd for AnswerDigest {
    fn partial_cmp(&self, other: &AnswerDigest) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl AnswerDigest {
    pub fn of(answer: &str, settings: &ConversionSettings) -> AnswerDigest {
        // Destructured without `..`: a setting added to the conversion must
        // be placed in the digest before this compiles.
        let ConversionSettings {
            central_gateway_url,
            skip_apps_tls_verify,
            normalize_application_names,
        } = settings;
        let mut hasher = Sha1::new();
        hasher.update((central_gateway_url.len() as u64).to_be_bytes());
        hasher.update(central_gateway_url.as_bytes());
        hasher.update([
            u8::from(*skip_apps_tls_verify),
            u8::from(*normalize_application_names),
        ]);
        hasher.update(answer.as_bytes());
        AnswerDigest(hasher.finalize().into())
    }
}

impl std::fmt::Debug for AnswerDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnswerDigest({})", hex::encode(self.0))
    }
}

/// The answers of the last sync, each with what it wanted: sorted by answer.
#[derive(Debug, Default)]
pub struct KnownAnswers {
    answers: Vec<(AnswerDigest, WantedDigest)>,
}

impl KnownAnswers {
    fn wanted(&self, answer: &AnswerDigest) -> Option<WantedDigest> {
        self.answers
            .binary_search_by(|(known, _)| known.cmp(answer))
            .ok()
            .map(|at| self.answers[at].1)
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The application of a remembered answer, settled to its names, when
    /// the cluster holds exactly what the answer wanted; `None` when the
    /// answer is not remembered or the cluster holds something else (then
    /// it must be parsed and converted).
    pub fn recall(
        &self,
        answer: &AnswerDigest,
        (application_id, director_name): (&str, &str),
        settings: &ConversionSettings,
        actual: &ActualIndex,
    ) -> Option<(HeldApplication, WantedDigest)> {
        let wanted = self.wanted(answer)?;
        let name = settings.application_name(director_name);
        let existing = actual.applications.get(name.as_str())?;
        let uid = existing.uid.as_deref()?;
        if !existing.is_the_agents_as_written() {
            return None;
        }
        // The Secrets its entries point at: those it wanted, if the digests
        // agree (a Secret wanted but pointed at by no entry makes them
        // disagree, and the answer takes the whole way).
        let mut secrets = Vec::new();
        for secret_name in existing.referenced_secrets.iter() {
            let found = actual.secrets.get(secret_name)?;
            if !found.is_the_agents() || !found.is_owned_by(uid) {
                return None;
            }
            secrets.push(SecretFacts {
                name: secret_name,
                data: found.data_hash?,
                app: found.label(SECRET_APP_LABEL)?,
                bundle_id: found.label(SECRET_BUNDLE_LABEL)?,
            });
        }
        if WantedDigest::of(existing.owned, secrets) != wanted {
            return None;
        }
        let held = HeldApplication {
            name,
            application_id: application_id.to_string(),
            owned: existing.owned,
            content: Content::Settled {
                secret_names: existing.referenced_secrets.clone(),
            },
            inconsistency: None,
        };
        Some((held, wanted))
    }
}

/// The answers of the sync under way, each with what it wants, to be the
/// [`KnownAnswers`] of the next: answers the Director no longer gives are
/// forgotten with the sync that did not see them.
#[derive(Debug, Default)]
pub struct AnswerRecord {
    answers: Vec<(AnswerDigest, WantedDigest)>,
}

impl AnswerRecord {
    /// An answer whose application came whole in it (no further page).
    pub fn remember(&mut self, answer: AnswerDigest, wanted: WantedDigest) {
        self.answers.push((answer, wanted));
    }

    /// Room for as many answers as the last sync had, reserved once.
    pub fn with_room_of(known: &KnownAnswers) -> AnswerRecord {
        AnswerRecord {
            answers: Vec::with_capacity(known.len()),
        }
    }

    pub fn finish(mut self) -> KnownAnswers {
        self.answers.sort_by_key(|(answer, _)| *answer);
        self.answers.dedup_by(|a, b| a.0 == b.0);
        self.answers.shrink_to_fit();
        KnownAnswers {
            answers: self.answers,
        }
    }
}

/// What a converted application wants the cluster to hold, as a digest;
/// `owned` is the digest of its owned fields, made once by the caller.
pub fn wanted_digest(owned: OwnedDigest, wanted: &WantedApplication) -> WantedDigest {
    WantedDigest::of(
        owned,
        wanted.secrets.iter().map(|secret| SecretFacts {
            name: secret.name(),
            data: secret.data_hash(),
            app: secret.app(),
            bundle_id: secret.bundle_id(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::actual::ActualState;
    use crate::sync::convert::to_wanted_application;
    use crate::sync::plan::tests::{
        applied, applied_objects, director_app, on_arrival, settings, summarize, wanted,
    };

    /// The answers of a fetch of `apps` under `settings()`, as remembered.
    fn known_after(apps: &[(&str, &WantedApplication)]) -> KnownAnswers {
        let mut record = AnswerRecord::default();
        for (text, wanted) in apps {
            let owned = OwnedDigest::of(&wanted.application.spec);
            record.remember(
                AnswerDigest::of(text, &settings()),
                wanted_digest(owned, wanted),
            );
        }
        record.finish()
    }

    fn recall(
        known: &KnownAnswers,
        text: &str,
        name: &str,
        state: &ActualState,
    ) -> Option<HeldApplication> {
        let answer = AnswerDigest::of(text, &settings());
        let id = format!("{name}-id");
        known
            .recall(&answer, (&id, name), &settings(), &ActualIndex::new(state))
            .map(|(held, _)| held)
    }

    #[test]
    fn answer_digests_are_ordered_as_their_bytes() {
        let settings = settings();
        let digests: Vec<AnswerDigest> = (0..2_000)
            .map(|i| AnswerDigest::of(&format!("answer {i}"), &settings))
            .collect();
        for a in &digests {
            for b in digests.iter().step_by(7) {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0));
            }
        }
        // And digests equal but for one byte anywhere.
        let base = digests[0];
        for at in 0..20 {
            let mut other = base;
            other.0[at] ^= 0x80;
            assert_eq!(base.cmp(&other), base.0.cmp(&other.0), "byte {at}");
        }
    }

    #[test]
    fn a_remembered_answer_the_cluster_holds_settles_as_converting_it_would() {
        let (shop, crm) = (wanted("shop", "p"), wanted("crm", "p"));
        let state = applied(&[shop.clone(), crm.clone()]);
        let known = known_after(&[("shop answer", &shop), ("crm answer", &crm)]);

        let recalled = recall(&known, "shop answer", "shop", &state).expect("recalled");
        let converted = on_arrival(std::slice::from_ref(&shop), &state).remove(0);
        assert!(converted.is_settled());
        assert_eq!(recalled, converted, "the same as parsing and converting it");
        assert_eq!(
            recall(&known, "crm answer", "crm", &state).map(|held| held.name),
            Some("crm".to_string())
        );
    }

    #[test]
    fn an_answer_not_remembered_or_under_other_settings_is_parsed() {
        let shop = wanted("shop", "p");
        let state = applied(std::slice::from_ref(&shop));
        let known = known_after(&[("shop answer", &shop)]);
        assert!(recall(&known, "shop answer, changed", "shop", &state).is_none());

        let other_settings = [
            ConversionSettings {
                central_gateway_url: "http://other:8082".into(),
                ..settings()
            },
            ConversionSettings {
                skip_apps_tls_verify: true,
                ..settings()
            },
            ConversionSettings {
                normalize_application_names: true,
                ..settings()
            },
        ];
        for other in other_settings {
            assert_ne!(
                AnswerDigest::of("shop answer", &other),
                AnswerDigest::of("shop answer", &settings()),
                "{other:?}"
            );
        }
        assert!(KnownAnswers::default().is_empty());
        assert!(recall(&KnownAnswers::default(), "shop answer", "shop", &state).is_none());
    }

    /// Whatever moved in the cluster since the answer was remembered, the
    /// application takes the whole way (and is written where it differs).
    #[test]
    fn a_cluster_that_no_longer_holds_what_the_answer_wanted_is_not_settled_from_it() {
        let shop = wanted("shop", "p");
        let known = known_after(&[("shop answer", &shop)]);
        let (apps, secrets) = applied_objects(std::slice::from_ref(&shop));
        assert!(recall(
            &known,
            "shop answer",
            "shop",
            &summarize(&apps, secrets.clone())
        )
        .is_some());

        let changes: Vec<(&str, ActualState)> = vec![
            ("no Application", summarize(&[], secrets.clone())),
            ("no Secret", summarize(&apps, vec![])),
            ("the Application's owned fields", {
                let mut apps = apps.clone();
                apps[0].spec.description.push('!');
                summarize(&apps, secrets.clone())
            }),
            ("the managed-by label", {
                let mut apps = apps.clone();
                apps[0].metadata.labels = None;
                summarize(&apps, secrets.clone())
            }),
            ("the Secret's data", {
                let stale = wanted("shop", "another password");
                let (_, secrets) = applied_objects(&[stale]);
                summarize(&apps, secrets)
            }),
            ("the Secret's bundleId label", {
                let mut secrets = secrets.clone();
                let labels = secrets[0].metadata.labels.as_mut().unwrap();
                labels.insert("bundleId".into(), "another".into());
                summarize(&apps, secrets)
            }),
            ("the Secret's owner", {
                let mut secrets = secrets.clone();
                secrets[0].metadata.owner_references = None;
                summarize(&apps, secrets)
            }),
            ("a Secret that is not the agent's", {
                let mut secrets = secrets.clone();
                secrets[0].metadata.labels = None;
                summarize(&apps, secrets)
            }),
        ];
        for (what, state) in changes {
            assert!(
                recall(&known, "shop answer", "shop", &state).is_none(),
                "{what}"
            );
            let converted = on_arrival(std::slice::from_ref(&shop), &state).remove(0);
            assert!(!converted.is_settled(), "{what}: converting writes it");
        }
    }

    #[test]
    fn a_secret_wanted_but_pointed_at_by_no_entry_makes_the_answer_take_the_whole_way() {
        // A bundle with credentials and no API: its Secret is wanted, and no
        // entry names it.
        let mut app = director_app("shop", "p");
        app.bundles[0].api_definitions.clear();
        let shop = to_wanted_application(&app, &settings());
        assert_eq!(shop.secrets.len(), 1);
        let state = applied(std::slice::from_ref(&shop));
        let known = known_after(&[("shop answer", &shop)]);
        assert!(recall(&known, "shop answer", "shop", &state).is_none());
        assert!(
            on_arrival(std::slice::from_ref(&shop), &state)[0].is_settled(),
            "the whole way settles it"
        );
    }

    #[test]
    fn the_record_of_a_fetch_recalls_each_answer_it_saw_and_no_other() {
        let apps: Vec<WantedApplication> =
            (0..50).map(|i| wanted(&format!("app-{i}"), "p")).collect();
        let state = applied(&apps);
        let texts: Vec<String> = (0..50).map(|i| format!("answer {i}")).collect();
        let mut record = AnswerRecord::with_room_of(&KnownAnswers::default());
        // In the order the Director gave them, not the digests'.
        for (text, app) in texts.iter().zip(&apps).rev() {
            let owned = OwnedDigest::of(&app.application.spec);
            record.remember(
                AnswerDigest::of(text, &settings()),
                wanted_digest(owned, app),
            );
        }
        let known = record.finish();
        assert_eq!(known.len(), 50);
        for (i, text) in texts.iter().enumerate() {
            let held = recall(&known, text, &format!("app-{i}"), &state);
            assert_eq!(held.map(|h| h.name), Some(format!("app-{i}")));
        }
        // An answer given to another application's name wants what that
        // one wanted, not this one's: the digests disagree.
        assert!(recall(&known, &texts[0], "app-1", &state).is_none());
    }
}
