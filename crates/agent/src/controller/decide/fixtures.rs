//! What the decisions' tests build their cases from.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::{CompassConnectionStatus, ConnectionState, ConnectionStatus};

pub(super) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

pub(super) fn status(state: ConnectionState, last_sync: Option<i64>) -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: state,
        connection_status: ConnectionStatus {
            last_sync: last_sync.map(|s| Time(at(s))),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(super) const MIN: Duration = Duration::from_secs(10);

pub(super) fn certificate(from: i64, to: i64) -> CertificateInfo {
    CertificateInfo {
        subject: "CN=r".into(),
        common_name: "r".into(),
        serial: "01".into(),
        not_before: at(from),
        not_after: at(to),
    }
}
