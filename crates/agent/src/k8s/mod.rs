//! The Kubernetes side: the custom resources, the connection resource, the
//! credentials Secrets and the Applications with their Secrets.

pub mod applications;
pub mod connection;
pub mod crd;
pub mod credentials_store;
