//! The REST API of the corral daemon: request and response types, the OpenAPI document and a
//! typed client.
