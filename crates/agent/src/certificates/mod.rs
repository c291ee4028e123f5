//! Client certificates: the subject the Connector asks for, keys and CSRs, and
//! the checks a certificate passes before the agent stores or uses it.

pub mod subject;
