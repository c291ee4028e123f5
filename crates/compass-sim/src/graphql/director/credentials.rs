//! A bundle's default instance auth: its credentials (Basic or OAuth), request
//! parameters and CSRF endpoint.

use async_graphql::{Object, SimpleObject, Union, ID};

use crate::graphql::scalars::{HttpHeaders, QueryParams};
use crate::model;

pub struct Auth(pub(super) model::InstanceAuth);

#[Object(name = "Auth")]
impl Auth {
    async fn credential(&self) -> Option<CredentialData> {
        self.0.credential.as_ref().map(|c| match c {
            model::Credential::Basic(b) => CredentialData::Basic(BasicCredentialData {
                username: b.username.clone(),
                password: b.password.clone(),
            }),
            model::Credential::Oauth(o) => CredentialData::OAuth(OAuthCredentialData {
                client_id: ID(o.client_id.clone()),
                client_secret: o.client_secret.clone(),
                url: o.url.clone(),
            }),
        })
    }
    async fn additional_headers(&self) -> Option<HttpHeaders> {
        self.0.additional_headers.clone().map(HttpHeaders)
    }
    async fn additional_query_params(&self) -> Option<QueryParams> {
        self.0.additional_query_params.clone().map(QueryParams)
    }
    async fn request_auth(&self) -> Option<CredentialRequestAuth> {
        self.0.request_auth.as_ref().map(|r| CredentialRequestAuth {
            csrf: r.csrf.as_ref().map(|c| CsrfTokenCredentialRequestAuth {
                token_endpoint_url: c.token_endpoint_url.clone(),
            }),
        })
    }
}

#[derive(Union)]
#[graphql(name = "CredentialData")]
pub enum CredentialData {
    Basic(BasicCredentialData),
    OAuth(OAuthCredentialData),
}

#[derive(SimpleObject)]
#[graphql(name = "BasicCredentialData")]
pub struct BasicCredentialData {
    username: String,
    password: String,
}

#[derive(SimpleObject)]
#[graphql(name = "OAuthCredentialData")]
pub struct OAuthCredentialData {
    client_id: ID,
    client_secret: String,
    url: String,
}

#[derive(SimpleObject)]
#[graphql(name = "CredentialRequestAuth")]
pub struct CredentialRequestAuth {
    csrf: Option<CsrfTokenCredentialRequestAuth>,
}

#[derive(SimpleObject)]
#[graphql(name = "CSRFTokenCredentialRequestAuth")]
pub struct CsrfTokenCredentialRequestAuth {
    #[graphql(name = "tokenEndpointURL")]
    token_endpoint_url: String,
}
