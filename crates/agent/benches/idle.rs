//! The agent's own CPU in an idle sync, part by part, without I/O: what an
//! unchanged Director answer costs from its bytes to an empty plan. Prints;
//! never fails on a time.
//!
//!     cargo bench -p compass-runtime-agent --bench idle
//!     BENCH_IDLE_SIZES=1000,10000 cargo bench -p compass-runtime-agent --bench idle
//!
//! The sync bench measures the whole idle sync against a real API server and
//! compass-sim (its figure is the one the goal is about); this one says
//! which part of it the agent's code spends the time in, steadily enough
//! to compare two builds: each part is timed alone, fastest of five.
//! Parts: splitting the Director's pages (200 applications a page) into each
//! application's answer; recalling each answer the last sync remembered
//! (its digest, the comparison with the cluster as read: what an idle sync
//! does); the plan of what was held. Beside them, what an answer that is
//! not known costs instead: converting it, and holding it against the
//! cluster (digest, compare, keep only names).

use std::hint::black_box;
use std::time::{Duration, Instant};

use compass_runtime_agent::compass::director::{decode_answer, Answer};
use compass_runtime_agent::compass::model;
use compass_runtime_agent::sync::{
    self, known_answers, to_wanted_application, ActualIndex, AnswerDigest, AnswerRecord, Deletions,
    HeldApplication, OwnedDigest, Packer,
};
use serde_json::{json, Value};

#[path = "shared/sync_fixtures.rs"]
mod fixtures;
use fixtures::{conversion_settings, director_application, wanted, written};

const PAGE_SIZE: usize = 200;

/// An application as the Director's `applicationsForRuntime` page shows it.
fn as_director_json(application: &model::Application) -> Value {
    let page = |data: Vec<Value>| {
        json!({
            "data": data,
            "pageInfo": {"startCursor": "", "endCursor": "", "hasNextPage": false},
            "totalCount": 0,
        })
    };
    let bundles = application
        .bundles
        .iter()
        .map(|bundle| {
            let auth = bundle.default_instance_auth.as_ref().map(|auth| {
                let credential = match &auth.credential {
                    Some(model::Credential::Basic { username, password }) => json!({
                        "__typename": "BasicCredentialData", "username": username, "password": password
                    }),
                    Some(model::Credential::OAuth {
                        client_id,
                        client_secret,
                        url,
                    }) => json!({
                        "__typename": "OAuthCredentialData", "clientId": client_id,
                        "clientSecret": client_secret, "url": url
                    }),
                    None => Value::Null,
                };
                json!({
                    "credential": credential,
                    "additionalHeaders": auth.additional_headers,
                    "additionalQueryParams": auth.additional_query_params,
                    "requestAuth": null,
                })
            });
            let apis = bundle
                .api_definitions
                .iter()
                .map(|api| json!({"id": api.id, "name": api.name, "description": api.description, "targetURL": api.target_url}))
                .collect();
            let events = bundle
                .event_definitions
                .iter()
                .map(|event| json!({"id": event.id, "name": event.name, "description": event.description}))
                .collect();
            json!({
                "id": bundle.id, "name": bundle.name, "description": bundle.description,
                "instanceAuthRequestInputSchema": bundle.instance_auth_request_input_schema,
                "defaultInstanceAuth": auth,
                "apiDefinitions": page(apis),
                "eventDefinitions": page(events),
            })
        })
        .collect();
    json!({
        "id": application.id, "name": application.name, "providerName": application.provider_name,
        "description": application.description, "labels": {"scenarios": ["DEFAULT"]},
        "auths": application.auths.iter().map(|auth| json!({"id": auth.id})).collect::<Vec<_>>(),
        "bundles": page(bundles),
    })
}

/// The Director's answers for `count` applications, 200 a page.
fn director_pages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .step_by(PAGE_SIZE)
        .map(|first| {
            let data: Vec<Value> = (first..(first + PAGE_SIZE).min(count))
                .map(|i| as_director_json(&director_application(i)))
                .collect();
            serde_json::to_vec(&json!({"data": {
                "runtime": {"labels": {}},
                "applicationsForRuntime": {
                    "data": data,
                    "pageInfo": {"startCursor": "", "endCursor": "", "hasNextPage": false},
                    "totalCount": count,
                }
            }}))
            .expect("JSON")
        })
        .collect()
}

/// The fastest of five runs of `part`.
fn fastest<T>(mut part: impl FnMut() -> T) -> Duration {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            black_box(part());
            started.elapsed()
        })
        .min()
        .expect("five runs")
}

fn main() {
    let sizes = fixtures::sizes("BENCH_IDLE_SIZES", &[1_000, 10_000]);
    println!("compass-runtime-agent idle-sync CPU by part (no I/O; fastest of 5)");
    println!("each application: 2 bundles × 3 APIs, 4 Secrets; Director pages of {PAGE_SIZE}");
    println!("| applications | split pages | recall | plan | idle: sum | not known instead: convert, hold |");
    println!("|---|---|---|---|---|---|");
    let settings = conversion_settings();
    for count in sizes {
        let pages = director_pages(count);
        let fetched: Vec<model::Application> = (0..count).map(director_application).collect();
        let actual = written(&wanted(count));
        let index = ActualIndex::new(&actual);

        let decode = fastest(|| {
            for page in &pages {
                decode_answer(Answer::ApplicationsForRuntime, page).expect("a Director page");
            }
        });
        let convert = fastest(|| {
            for application in &fetched {
                black_box(to_wanted_application(application, &settings));
            }
        });
        let mut held: Vec<HeldApplication> = Vec::new();
        let hold = {
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let converted: Vec<_> = fetched
                    .iter()
                    .map(|application| to_wanted_application(application, &settings))
                    .collect();
                let mut packer = Packer::default();
                let started = Instant::now();
                held = converted
                    .into_iter()
                    .map(|wanted| {
                        let owned = OwnedDigest::of(&wanted.application.spec);
                        sync::hold(wanted, owned, Some(&index), &mut packer)
                    })
                    .collect();
                best = best.min(started.elapsed());
            }
            best
        };
        assert!(
            held.iter().all(HeldApplication::is_settled),
            "an unchanged application is settled on arrival"
        );
        let plan = {
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let input = held.clone();
                let started = Instant::now();
                let plan = sync::plan(input, &actual, Deletions::Allowed);
                best = best.min(started.elapsed());
                assert_eq!(plan.writes(), 0, "an idle plan writes nothing");
            }
            best
        };
        // Each application's answer as the Director wrote it, remembered as
        // the last sync would have.
        let answers: Vec<String> = fetched
            .iter()
            .map(|application| as_director_json(application).to_string())
            .collect();
        let known = {
            let mut record = AnswerRecord::default();
            for (answer, application) in answers.iter().zip(&fetched) {
                let wanted = to_wanted_application(application, &settings);
                let owned = OwnedDigest::of(&wanted.application.spec);
                record.remember(
                    AnswerDigest::of(answer, &settings),
                    known_answers::wanted_digest(owned, &wanted),
                );
            }
            record.finish()
        };
        let recall = fastest(|| {
            let recalled: Vec<HeldApplication> = answers
                .iter()
                .zip(&fetched)
                .filter_map(|(answer, application)| {
                    let digest = AnswerDigest::of(answer, &settings);
                    let identity = (application.id.as_str(), application.name.as_str());
                    known
                        .recall(&digest, identity, &settings, &index)
                        .map(|(held, _)| held)
                })
                .collect();
            assert_eq!(recalled.len(), count, "every answer is recalled");
            recalled
        });
        let ms = |time: Duration| format!("{:.1} ms", time.as_secs_f64() * 1e3);
        println!(
            "| {count} | {} | {} | {} | {} | {} + {} |",
            ms(decode),
            ms(recall),
            ms(plan),
            ms(decode + recall + plan),
            ms(convert),
            ms(hold),
        );
    }
}
