//! The Compass Director: the Runtime's applications and its labels, over mTLS
//! with the `Tenant` header. Every list is paged; the client follows every page
//! at every level (the original reads the first page only).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::graphql::without_quoted_values;
use super::model::{ApiDefinition, Application, Auth, Bundle, EventDefinition, SystemAuth};
pub use super::paging::PageInfo;
use super::paging::{Next, PageTracker};
use super::{CompassError, GraphqlClient};

const PAGE_INFO: &str = "pageInfo { startCursor endCursor hasNextPage } totalCount";

fn bundle_fields() -> String {
    format!(
        "fragment BundleFields on Bundle {{
  id name description instanceAuthRequestInputSchema
  defaultInstanceAuth {{
    credential {{
      __typename
      ... on BasicCredentialData {{ username password }}
      ... on OAuthCredentialData {{ clientId clientSecret url }}
    }}
    additionalHeaders additionalQueryParams
    requestAuth {{ csrf {{ tokenEndpointURL }} }}
  }}
  apiDefinitions(first: $pageSize) {{ data {{ id name description targetURL }} {PAGE_INFO} }}
  eventDefinitions(first: $pageSize) {{ data {{ id name description }} {PAGE_INFO} }}
}}"
    )
}

/// The first page also asks for the runtime's labels, which decide how the
/// applications are named (`isNormalized`): one request per sync for a
/// runtime with up to a page of applications, as the original makes.
fn applications_query(with_runtime_labels: bool) -> String {
    let runtime = if with_runtime_labels {
        "runtime(id: $runtimeId) { labels }\n  "
    } else {
        ""
    };
    format!(
        "query ApplicationsForRuntime($runtimeId: ID!, $pageSize: Int!, $after: PageCursor) {{
  {runtime}applicationsForRuntime(runtimeID: $runtimeId, first: $pageSize, after: $after) {{
    data {{
      id name providerName description labels auths {{ id }}
      bundles(first: $pageSize) {{ data {{ ...BundleFields }} {PAGE_INFO} }}
    }}
    {PAGE_INFO}
  }}
}}
{}",
        bundle_fields()
    )
}

fn bundles_query() -> String {
    format!(
        "query ApplicationBundles($applicationId: ID!, $pageSize: Int!, $after: PageCursor) {{
  application(id: $applicationId) {{
    bundles(first: $pageSize, after: $after) {{ data {{ ...BundleFields }} {PAGE_INFO} }}
  }}
}}
{}",
        bundle_fields()
    )
}

fn api_definitions_query() -> String {
    format!(
        "query BundleApiDefinitions($applicationId: ID!, $bundleId: ID!, $pageSize: Int!, $after: PageCursor) {{
  application(id: $applicationId) {{
    bundle(id: $bundleId) {{
      apiDefinitions(first: $pageSize, after: $after) {{ data {{ id name description targetURL }} {PAGE_INFO} }}
    }}
  }}
}}"
    )
}

fn event_definitions_query() -> String {
    format!(
        "query BundleEventDefinitions($applicationId: ID!, $bundleId: ID!, $pageSize: Int!, $after: PageCursor) {{
  application(id: $applicationId) {{
    bundle(id: $bundleId) {{
      eventDefinitions(first: $pageSize, after: $after) {{ data {{ id name description }} {PAGE_INFO} }}
    }}
  }}
}}"
    )
}

const RUNTIME_LABELS: &str =
    "query RuntimeLabels($runtimeId: ID!) { runtime(id: $runtimeId) { labels } }";

const SET_RUNTIME_LABEL: &str =
    "mutation SetRuntimeLabel($runtimeId: ID!, $key: String!, $value: Any!) {
  setRuntimeLabel(runtimeID: $runtimeId, key: $key, value: $value) { key value }
}";

/// The Director's default and maximum page size.
pub const DEFAULT_PAGE_SIZE: u32 = 200;

/// More pages than any Director would serve; stops a server that never says
/// `hasNextPage: false`.
const MAX_PAGES: usize = 100_000;

/// A page of a list. The list and `totalCount` are kept as they came
/// (`null`, missing): the [`PageTracker`] tells whether the list is whole.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
struct Page<T> {
    #[serde(default)]
    data: Option<Vec<T>>,
    #[serde(default)]
    page_info: PageInfo,
    #[serde(default)]
    total_count: Option<i64>,
}

impl<T> Page<T> {
    /// Counts the page in `tracker`; hands out its items and what comes next.
    fn take(self, tracker: &mut PageTracker) -> (Vec<T>, Next) {
        let next = tracker.page(
            self.data.as_ref().map(Vec::len),
            self.total_count,
            &self.page_info,
        );
        (self.data.unwrap_or_default(), next)
    }
}

/// A Director application with all its pages, and, when one of its lists
/// did not come whole, what was wrong (it must then not be written).
#[derive(Debug)]
pub struct FetchedApplication {
    pub application: Application,
    pub inconsistency: Option<String>,
    /// Whether it came whole in its page of the applications' list, with no
    /// further page of its bundles or definitions: then that answer alone
    /// says everything about it.
    pub in_one_answer: bool,
}

/// What a fetch of the applications came to besides the applications
/// themselves: the runtime's labels, read with the first page, and why the
/// list of applications did not come whole, if it did not (it must then not
/// decide a deletion).
#[derive(Debug)]
pub struct FetchOutcome {
    pub labels: RuntimeLabelValues,
    pub inconsistency: Option<String>,
}

// An application and a bundle as a page brings them, with the first page
// of each of their lists. Their fields are spelled out rather than
// `#[serde(flatten)]`ed from the model's: a flattened struct is first
// buffered whole as generic content and read a second time from there, which
// doubled the parsing of every Director page.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawApplication {
    id: String,
    name: String,
    #[serde(default)]
    provider_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    labels: Option<serde_json::Value>,
    #[serde(default)]
    auths: Option<Vec<SystemAuth>>,
    #[serde(default)]
    bundles: Option<Page<RawBundle>>,
}

impl RawApplication {
    /// Whether no list of it says there is a further page.
    fn is_whole(&self) -> bool {
        self.bundles.as_ref().is_some_and(|bundles| {
            !bundles.page_info.has_next_page
                && bundles.data.iter().flatten().all(|bundle| {
                    let ends = |info: Option<&PageInfo>| info.is_some_and(|i| !i.has_next_page);
                    ends(bundle.api_definitions.as_ref().map(|p| &p.page_info))
                        && ends(bundle.event_definitions.as_ref().map(|p| &p.page_info))
                })
        })
    }

    /// The application without its bundles, and their first page.
    fn split(self) -> (Application, Option<Page<RawBundle>>) {
        let application = Application {
            id: self.id,
            name: self.name,
            provider_name: self.provider_name,
            description: self.description,
            labels: self.labels,
            auths: self.auths.unwrap_or_default(),
            bundles: Vec::new(),
        };
        (application, self.bundles)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    instance_auth_request_input_schema: Option<String>,
    #[serde(default)]
    default_instance_auth: Option<Auth>,
    #[serde(default)]
    api_definitions: Option<Page<ApiDefinition>>,
    #[serde(default)]
    event_definitions: Option<Page<EventDefinition>>,
}

impl RawBundle {
    /// The bundle without its definitions, and their first pages.
    #[allow(clippy::type_complexity)]
    fn split(
        self,
    ) -> (
        Bundle,
        Option<Page<ApiDefinition>>,
        Option<Page<EventDefinition>>,
    ) {
        let bundle = Bundle {
            id: self.id,
            name: self.name,
            description: self.description,
            instance_auth_request_input_schema: self.instance_auth_request_input_schema,
            default_instance_auth: self.default_instance_auth,
            api_definitions: Vec::new(),
            event_definitions: Vec::new(),
        };
        (bundle, self.api_definitions, self.event_definitions)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationsData {
    /// Asked for with the first page only.
    #[serde(default)]
    runtime: Option<RuntimeLabels>,
    /// Each application as its text: the caller may already know it
    /// ([`Arrival::Answer`]), and then it is never parsed.
    applications_for_runtime: Page<Box<RawValue>>,
}

/// What names an application, read from its text alone; the parser skips
/// the rest without allocating it.
#[derive(Deserialize)]
struct ApplicationIdentity<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// An application of a page, as [`DirectorClient::for_each_application`]
/// hands it to the caller: first as the text the Director answered, which
/// the caller may know already; then, unless the caller knew it, parsed
/// with all its pages.
pub enum Arrival<'a> {
    Answer {
        text: &'a str,
        id: &'a str,
        name: &'a str,
    },
    Whole(FetchedApplication),
}

/// What the caller did with an [`Arrival::Answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// It knew the answer: the application is not parsed.
    Known,
    /// Parse it and hand it over whole.
    Parse,
}

/// A Runtime's labels in the Director: label key → JSON value.
pub type RuntimeLabelValues = BTreeMap<String, serde_json::Value>;

#[derive(Deserialize)]
struct ApplicationData<T> {
    application: Option<T>,
}

#[derive(Deserialize)]
struct BundlesOfApplication {
    bundles: Option<Page<RawBundle>>,
}

#[derive(Deserialize)]
struct BundleOfApplication<T> {
    bundle: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiDefinitionsOfBundle {
    api_definitions: Option<Page<ApiDefinition>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDefinitionsOfBundle {
    event_definitions: Option<Page<EventDefinition>>,
}

#[derive(Deserialize)]
struct RuntimeData {
    runtime: Option<RuntimeLabels>,
}

#[derive(Deserialize)]
struct RuntimeLabels {
    #[serde(default)]
    labels: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetLabelData {
    #[allow(dead_code)]
    set_runtime_label: serde_json::Value,
}

/// The Director, for one Runtime of one tenant.
#[derive(Clone)]
pub struct DirectorClient {
    graphql: GraphqlClient,
    runtime_id: String,
    tenant: String,
    page_size: u32,
}

impl DirectorClient {
    pub fn new(
        graphql: GraphqlClient,
        runtime_id: &str,
        tenant: &str,
        page_size: u32,
    ) -> DirectorClient {
        DirectorClient {
            graphql,
            runtime_id: runtime_id.to_string(),
            tenant: tenant.to_string(),
            page_size: page_size.clamp(1, DEFAULT_PAGE_SIZE),
        }
    }

    async fn execute<D: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<D, CompassError> {
        self.graphql
            .execute(
                operation,
                query,
                variables,
                &[("Tenant", self.tenant.as_str())],
            )
            .await
    }

    /// Every application assigned to the Runtime, with all of their bundles, API
    /// definitions and event definitions, each handed to `visit` as soon as it
    /// is complete, so that the caller can keep a smaller form of it; with it
    /// the Runtime's labels, read in the same request as the first page.
    /// Returns the labels and whether the list came whole. A failure fails
    /// the whole fetch: the caller must then discard what it was handed, so
    /// a partial answer is never mistaken for the Director's truth.
    /// `before_visiting_page` is awaited when a page has come, before its
    /// applications are handed over: the caller may hold the fetch back
    /// there (the page waits as its text).
    pub async fn for_each_application<Pause: std::future::Future<Output = ()>>(
        &self,
        mut visit: impl FnMut(&RuntimeLabelValues, Arrival) -> Handled,
        mut before_visiting_page: impl FnMut() -> Pause,
    ) -> Result<FetchOutcome, CompassError> {
        let first_query = applications_query(true);
        let next_query = applications_query(false);
        let mut labels = None;
        let mut tracker = PageTracker::default();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let query = if labels.is_none() {
                &first_query
            } else {
                &next_query
            };
            let data: ApplicationsData = self
                .execute(
                    "applicationsForRuntime",
                    query,
                    json!({ "runtimeId": self.runtime_id, "pageSize": self.page_size, "after": after }),
                )
                .await?;
            let known = match labels.take() {
                Some(known) => known,
                None => {
                    let runtime = data.runtime.ok_or_else(|| self.unknown_runtime())?;
                    runtime.labels.unwrap_or_default()
                }
            };
            let runtime_labels = &*labels.insert(known);
            let (applications, next) = data.applications_for_runtime.take(&mut tracker);
            before_visiting_page().await;
            for text in applications {
                let text = text.get();
                let identity = identity_of(text)?;
                let arrival = Arrival::Answer {
                    text,
                    id: &identity.id,
                    name: &identity.name,
                };
                if visit(runtime_labels, arrival) == Handled::Known {
                    continue;
                }
                let raw: RawApplication = parse_application(text)?;
                let fetched = self.complete_application(raw).await?;
                visit(runtime_labels, Arrival::Whole(fetched));
            }
            match next {
                Next::After(cursor) => after = Some(cursor),
                Next::Done => {
                    return Ok(FetchOutcome {
                        labels: labels.unwrap_or_default(),
                        inconsistency: tracker
                            .finish()
                            .err()
                            .map(|problem| format!("the list of applications: {problem}")),
                    })
                }
            }
        }
        Err(too_many_pages("applicationsForRuntime"))
    }

    fn unknown_runtime(&self) -> CompassError {
        CompassError::InvalidAnswer {
            operation: "runtime",
            reason: format!("the Director does not know runtime {:?}", self.runtime_id),
        }
    }

    async fn complete_application(
        &self,
        raw: RawApplication,
    ) -> Result<FetchedApplication, CompassError> {
        let in_one_answer = raw.is_whole();
        let (mut application, bundles) = raw.split();
        let id = application.id.clone();
        let mut inconsistency = None;
        let mut note = |problem: String| {
            inconsistency.get_or_insert(problem);
        };
        let Some(mut page) = bundles else {
            note(format!("the bundles of application {id:?} are null"));
            return Ok(FetchedApplication {
                application,
                inconsistency,
                in_one_answer,
            });
        };
        let query = bundles_query();
        let mut tracker = PageTracker::default();
        for _ in 0..MAX_PAGES {
            let (bundles, next) = page.take(&mut tracker);
            for raw_bundle in bundles {
                let (bundle, problem) = self.complete_bundle(&id, raw_bundle).await?;
                if let Some(problem) = problem {
                    note(problem);
                }
                application.bundles.push(bundle);
            }
            let Next::After(cursor) = next else {
                if let Err(problem) = tracker.finish() {
                    note(format!("the bundles of application {id:?}: {problem}"));
                }
                return Ok(FetchedApplication {
                    application,
                    inconsistency,
                    in_one_answer,
                });
            };
            let data: ApplicationData<BundlesOfApplication> = self
                .execute(
                    "application",
                    &query,
                    json!({ "applicationId": id, "pageSize": self.page_size, "after": cursor }),
                )
                .await?;
            match data.application.and_then(|application| application.bundles) {
                Some(next_page) => page = next_page,
                None => {
                    note(format!(
                        "application {id:?} or its bundles vanished while its pages were read"
                    ));
                    return Ok(FetchedApplication {
                        application,
                        inconsistency,
                        in_one_answer,
                    });
                }
            }
        }
        Err(too_many_pages("application.bundles"))
    }

    async fn complete_bundle(
        &self,
        application_id: &str,
        raw: RawBundle,
    ) -> Result<(Bundle, Option<String>), CompassError> {
        let (mut bundle, api_definitions, event_definitions) = raw.split();
        let (apis, api_problem) = self
            .follow_bundle_pages(
                application_id,
                &bundle.id,
                api_definitions,
                &api_definitions_query(),
                |b: ApiDefinitionsOfBundle| b.api_definitions,
            )
            .await?;
        let (events, event_problem) = self
            .follow_bundle_pages(
                application_id,
                &bundle.id,
                event_definitions,
                &event_definitions_query(),
                |b: EventDefinitionsOfBundle| b.event_definitions,
            )
            .await?;
        bundle.api_definitions = apis;
        bundle.event_definitions = events;
        let problem = api_problem
            .map(|p| format!("the API definitions of bundle {:?}: {p}", bundle.id))
            .or(event_problem
                .map(|p| format!("the event definitions of bundle {:?}: {p}", bundle.id)));
        Ok((bundle, problem))
    }

    /// Collects a bundle's API or event definitions, page after page; with
    /// what was wrong with the list, if it did not come whole.
    async fn follow_bundle_pages<T, B: DeserializeOwned>(
        &self,
        application_id: &str,
        bundle_id: &str,
        first: Option<Page<T>>,
        query: &str,
        page_of: impl Fn(B) -> Option<Page<T>>,
    ) -> Result<(Vec<T>, Option<String>), CompassError> {
        let mut items = Vec::new();
        let Some(mut page) = first else {
            return Ok((items, Some("the list is null".into())));
        };
        let mut tracker = PageTracker::default();
        for _ in 0..MAX_PAGES {
            let (mut taken, next) = page.take(&mut tracker);
            items.append(&mut taken);
            let Next::After(cursor) = next else {
                return Ok((items, tracker.finish().err()));
            };
            let data: ApplicationData<BundleOfApplication<B>> = self
                .execute(
                    "application",
                    query,
                    json!({
                        "applicationId": application_id,
                        "bundleId": bundle_id,
                        "pageSize": self.page_size,
                        "after": cursor,
                    }),
                )
                .await?;
            match data
                .application
                .and_then(|application| application.bundle)
                .and_then(&page_of)
            {
                Some(next_page) => page = next_page,
                None => return Ok((items, Some("it vanished while its pages were read".into()))),
            }
        }
        Err(too_many_pages("bundle definitions"))
    }

    /// The Runtime's labels.
    pub async fn runtime_labels(&self) -> Result<RuntimeLabelValues, CompassError> {
        let data: RuntimeData = self
            .execute(
                "runtime",
                RUNTIME_LABELS,
                json!({ "runtimeId": self.runtime_id }),
            )
            .await?;
        let runtime = data.runtime.ok_or_else(|| self.unknown_runtime())?;
        Ok(runtime.labels.unwrap_or_default())
    }

    pub async fn set_runtime_label(&self, key: &str, value: &str) -> Result<(), CompassError> {
        let _: SetLabelData = self
            .execute(
                "setRuntimeLabel",
                SET_RUNTIME_LABEL,
                json!({ "runtimeId": self.runtime_id, "key": key, "value": value }),
            )
            .await?;
        Ok(())
    }
}

/// The answers the Director client decodes, one per query it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    ApplicationsForRuntime,
    ApplicationBundles,
    BundleApiDefinitions,
    BundleEventDefinitions,
    RuntimeLabels,
    SetRuntimeLabel,
}

impl Answer {
    pub const ALL: [Answer; 6] = [
        Answer::ApplicationsForRuntime,
        Answer::ApplicationBundles,
        Answer::BundleApiDefinitions,
        Answer::BundleEventDefinitions,
        Answer::RuntimeLabels,
        Answer::SetRuntimeLabel,
    ];
}

/// Decodes `body` into the type the client reads `answer` into, and drops it.
/// Pure, for tests and fuzzing the decoding without a Director.
pub fn decode_answer(answer: Answer, body: &[u8]) -> Result<(), CompassError> {
    use crate::compass::graphql::decode_response;
    match answer {
        Answer::ApplicationsForRuntime => {
            decode_response::<ApplicationsData>("applicationsForRuntime", body).map(drop)
        }
        Answer::ApplicationBundles => {
            decode_response::<ApplicationData<BundlesOfApplication>>("application", body).map(drop)
        }
        Answer::BundleApiDefinitions => decode_response::<
            ApplicationData<BundleOfApplication<ApiDefinitionsOfBundle>>,
        >("application", body)
        .map(drop),
        Answer::BundleEventDefinitions => decode_response::<
            ApplicationData<BundleOfApplication<EventDefinitionsOfBundle>>,
        >("application", body)
        .map(drop),
        Answer::RuntimeLabels => decode_response::<RuntimeData>("runtime", body).map(drop),
        Answer::SetRuntimeLabel => {
            decode_response::<SetLabelData>("setRuntimeLabel", body).map(drop)
        }
    }
}

/// One application of an `applicationsForRuntime` page, from its text: an
/// error names what is wrong, not the values (a credential may be there).
fn parse_application<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, CompassError> {
    serde_json::from_str(text).map_err(|e| CompassError::InvalidAnswer {
        operation: "applicationsForRuntime",
        reason: without_quoted_values(&e.to_string()),
    })
}

/// The id and name of an application, from its text. The Director writes
/// an object's fields in the order the query names them (GraphQL's rule),
/// and the query begins with `id name`: read from the front of the text,
/// they cost nothing of the rest of it. A text that begins otherwise
/// (spaces, another order, an escape in either) is parsed whole, which
/// also says what is wrong with it.
fn identity_of(text: &str) -> Result<ApplicationIdentity<'_>, CompassError> {
    leading_identity(text).map_or_else(|| parse_application(text), Ok)
}

fn leading_identity(text: &str) -> Option<ApplicationIdentity<'_>> {
    let rest = text.strip_prefix(r#"{"id":"#)?;
    let (id, rest) = leading_string(rest)?;
    let rest = rest.strip_prefix(r#","name":"#)?;
    let (name, _) = leading_string(rest)?;
    Some(ApplicationIdentity {
        id: id.into(),
        name: name.into(),
    })
}

/// The JSON string without escapes at the front of `text`, and what
/// follows it.
fn leading_string(text: &str) -> Option<(&str, &str)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<&str>();
    let value = values.next()?.ok()?;
    Some((value, &text[values.byte_offset()..]))
}

fn too_many_pages(list: &str) -> CompassError {
    CompassError::InvalidAnswer {
        operation: "applicationsForRuntime",
        reason: format!("{list}: more than {MAX_PAGES} pages"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_as_the_client_reads_them() {
        let page = br#"{"data":{"applicationsForRuntime":{"data":[],
            "pageInfo":{"startCursor":"","endCursor":"","hasNextPage":false},"totalCount":0}}}"#;
        assert!(decode_answer(Answer::ApplicationsForRuntime, page).is_ok());
        assert!(decode_answer(Answer::SetRuntimeLabel, page).is_err());
        for answer in Answer::ALL {
            assert!(matches!(
                decode_answer(answer, b"<html>"),
                Err(CompassError::NotJson { .. })
            ));
        }
    }

    #[test]
    fn an_application_that_does_not_parse_is_an_invalid_answer_naming_what_is_wrong_not_the_values()
    {
        let without_name = r#"{"id":"app-1","bundles":{"data":[{"id":"b","name":"b",
            "defaultInstanceAuth":{"credential":{"__typename":"BasicCredentialData",
            "username":"u","password":"hunter2"}}}]}}"#;
        let wrong_type = r#"{"id":"app-1","name":["hunter2"]}"#;
        for (text, what) in [
            (without_name, "missing field `name`"),
            (wrong_type, "invalid type: sequence, expected a string"),
        ] {
            let identity = parse_application::<ApplicationIdentity>(text).err();
            let whole = parse_application::<RawApplication>(text).err();
            for error in [identity, whole] {
                match error {
                    Some(CompassError::InvalidAnswer { operation, reason }) => {
                        assert_eq!(operation, "applicationsForRuntime");
                        assert!(reason.contains(what), "{reason}");
                        assert!(!reason.contains("hunter2"), "{reason}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn an_applications_id_and_name_read_from_the_front_are_those_of_the_whole_parse() {
        for text in [
            // As the Director writes it: fields in the query's order.
            r#"{"id":"app-1","name":"shop","description":"{\"id\":\"x\"}","bundles":null}"#,
            r#"{"id":"app-1","name":"","labels":{"name":"other"}}"#,
            // Anything else is parsed whole, with the same result.
            r#"{"name":"shop","id":"app-1"}"#,
            r#"{ "id": "app-1", "name": "shop" }"#,
            r#"{"id":"app-\u0031","name":"sh\"op"}"#,
            r#"{"id":"app-1","providerName":"p","name":"shop"}"#,
        ] {
            let whole: ApplicationIdentity = parse_application(text).unwrap();
            let read = identity_of(text).unwrap();
            assert_eq!((read.id, read.name), (whole.id, whole.name), "{text}");
        }
        assert!(leading_identity(r#"{"id":"app-1","name":"shop","x":1}"#).is_some());
        assert!(leading_identity(r#"{"id":"app-\u0031","name":"shop"}"#).is_none());
        // What the front cannot tell fails as the whole parse fails.
        for text in [
            r#"{"id":"app-1","name":5}"#,
            r#"{"id":null,"name":"shop"}"#,
            r#"{"id":"app-1"}"#,
        ] {
            assert!(
                matches!(identity_of(text), Err(CompassError::InvalidAnswer { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn an_application_with_a_further_page_anywhere_is_not_whole_in_its_answer() {
        let application = |bundles_next: bool, apis_next: bool, events: &str| {
            format!(
                r#"{{"id":"a","name":"n","bundles":{{"data":[{{"id":"b","name":"b",
                "apiDefinitions":{{"data":[],"pageInfo":{{"hasNextPage":{apis_next},"endCursor":"c"}},"totalCount":1}},
                "eventDefinitions":{events}}}],
                "pageInfo":{{"hasNextPage":{bundles_next},"endCursor":"c"}},"totalCount":1}}}}"#
            )
        };
        let ends = r#"{"data":[],"pageInfo":{"hasNextPage":false},"totalCount":0}"#;
        let is_whole = |text: String| {
            parse_application::<RawApplication>(&text)
                .unwrap()
                .is_whole()
        };
        assert!(is_whole(application(false, false, ends)));
        assert!(!is_whole(application(true, false, ends)), "more bundles");
        assert!(!is_whole(application(false, true, ends)), "more APIs");
        let more_events =
            r#"{"data":[],"pageInfo":{"hasNextPage":true,"endCursor":"c"},"totalCount":9}"#;
        assert!(
            !is_whole(application(false, false, more_events)),
            "more events"
        );
        assert!(!is_whole(application(false, false, "null")), "events null");
        assert!(
            !is_whole(r#"{"id":"a","name":"n","bundles":null}"#.into()),
            "bundles null"
        );
    }

    #[test]
    fn an_application_page_decodes_with_nested_pages_and_credentials() {
        let body = br#"{"data":{"applicationsForRuntime":{"data":[{
            "id":"app-1","name":"shop","providerName":"SAP","description":null,"labels":{"scenarios":["DEFAULT"]},
            "auths":[{"id":"auth-1"}],
            "bundles":{"data":[{"id":"b-1","name":"Orders","description":"d","instanceAuthRequestInputSchema":null,
              "defaultInstanceAuth":{"credential":{"__typename":"OAuthCredentialData","clientId":"c","clientSecret":"s","url":"https://oauth"},
                "additionalHeaders":{"h":["1","2"]},"additionalQueryParams":null,"requestAuth":{"csrf":{"tokenEndpointURL":"https://csrf"}}},
              "apiDefinitions":{"data":[{"id":"api-1","name":"orders","description":null,"targetURL":"https://api"}],
                "pageInfo":{"startCursor":"","endCursor":"","hasNextPage":false},"totalCount":1},
              "eventDefinitions":{"data":null,"pageInfo":{"startCursor":"","endCursor":"","hasNextPage":false},"totalCount":0}}],
             "pageInfo":{"startCursor":"","endCursor":"","hasNextPage":false},"totalCount":1}}],
          "pageInfo":{"startCursor":"","endCursor":"","hasNextPage":false},"totalCount":1}}}"#;
        let data: ApplicationsData =
            crate::compass::graphql::decode_response("applicationsForRuntime", body).unwrap();
        let text = data.applications_for_runtime.data.as_ref().unwrap()[0].get();
        let identity: ApplicationIdentity = parse_application(text).unwrap();
        assert_eq!((&*identity.id, &*identity.name), ("app-1", "shop"));
        let app: RawApplication = parse_application(text).unwrap();
        assert!(app.is_whole(), "no list has a further page");
        assert_eq!(app.name, "shop");
        assert_eq!(app.provider_name.as_deref(), Some("SAP"));
        assert_eq!(app.auths.as_ref().unwrap()[0].id, "auth-1");
        let bundle = &app.bundles.as_ref().unwrap().data.as_ref().unwrap()[0];
        assert_eq!(
            bundle
                .api_definitions
                .as_ref()
                .unwrap()
                .data
                .as_ref()
                .unwrap()[0]
                .target_url,
            "https://api"
        );
        assert_eq!(
            (bundle.id.as_str(), bundle.name.as_str()),
            ("b-1", "Orders")
        );
        let auth = bundle.default_instance_auth.as_ref().unwrap();
        assert!(matches!(
            auth.credential,
            Some(crate::compass::model::Credential::OAuth { .. })
        ));
        assert_eq!(
            auth.request_auth
                .as_ref()
                .unwrap()
                .csrf
                .as_ref()
                .unwrap()
                .token_endpoint_url,
            "https://csrf"
        );
    }
}
