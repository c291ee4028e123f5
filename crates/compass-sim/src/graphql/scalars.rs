//! The Director's custom scalars.

use async_graphql::{InputType, InputValueError, InputValueResult, Scalar, ScalarType, Value};
use serde_json::Map;

use crate::model::MultiMap;

fn json_value(json: serde_json::Value) -> Value {
    Value::from_json(json).unwrap_or(Value::Null)
}

/// `Labels`: a JSON object of label key → value.
pub struct Labels(pub Map<String, serde_json::Value>);

#[Scalar(name = "Labels")]
impl ScalarType for Labels {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value.into_json() {
            Ok(serde_json::Value::Object(map)) => Ok(Labels(map)),
            _ => Err(InputValueError::custom("Labels must be a JSON object")),
        }
    }

    fn to_value(&self) -> Value {
        json_value(serde_json::Value::Object(self.0.clone()))
    }
}

fn multimap_to_value(map: &MultiMap) -> Value {
    json_value(serde_json::to_value(map).unwrap_or_default())
}

fn parse_multimap<T: InputType>(value: Value, what: &str) -> Result<MultiMap, InputValueError<T>> {
    value
        .into_json()
        .ok()
        .and_then(|json| serde_json::from_value(json).ok())
        .ok_or_else(|| InputValueError::custom(format!("{what} must be {{name: [values]}}")))
}

/// `HttpHeaders`: `{name: [values]}`.
pub struct HttpHeaders(pub MultiMap);

#[Scalar(name = "HttpHeaders")]
impl ScalarType for HttpHeaders {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_multimap::<Self>(value, "HttpHeaders").map(HttpHeaders)
    }

    fn to_value(&self) -> Value {
        multimap_to_value(&self.0)
    }
}

/// `QueryParams`: `{name: [values]}`.
pub struct QueryParams(pub MultiMap);

#[Scalar(name = "QueryParams")]
impl ScalarType for QueryParams {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_multimap::<Self>(value, "QueryParams").map(QueryParams)
    }

    fn to_value(&self) -> Value {
        multimap_to_value(&self.0)
    }
}

/// `PageCursor`: an opaque string.
pub struct PageCursor(pub String);

#[Scalar(name = "PageCursor")]
impl ScalarType for PageCursor {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(PageCursor(s)),
            _ => Err(InputValueError::custom("PageCursor must be a string")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `JSONSchema`: stringified JSON.
pub struct JsonSchema(pub String);

#[Scalar(name = "JSONSchema")]
impl ScalarType for JsonSchema {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(JsonSchema(s)),
            _ => Err(InputValueError::custom("JSONSchema must be a string")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `Any`: any JSON value.
pub struct Any(pub serde_json::Value);

#[Scalar(name = "Any")]
impl ScalarType for Any {
    fn parse(value: Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(Any)
            .map_err(|e| InputValueError::custom(e.to_string()))
    }

    fn to_value(&self) -> Value {
        json_value(self.0.clone())
    }
}
