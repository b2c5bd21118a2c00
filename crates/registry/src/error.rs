//! Errors in the REST API's format: an HTTP status and `{"error_code": N, "message": "..."}`.

use std::fmt;

/// The registry's error codes.
pub mod code {
    pub const SUBJECT_NOT_FOUND: i32 = 40401;
    pub const VERSION_NOT_FOUND: i32 = 40402;
    pub const SCHEMA_NOT_FOUND: i32 = 40403;
    pub const SUBJECT_SOFT_DELETED: i32 = 40404;
    pub const SUBJECT_NOT_SOFT_DELETED: i32 = 40405;
    pub const VERSION_SOFT_DELETED: i32 = 40406;
    pub const VERSION_NOT_SOFT_DELETED: i32 = 40407;
    pub const SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED: i32 = 40408;
    pub const SUBJECT_LEVEL_MODE_NOT_CONFIGURED: i32 = 40409;
    pub const INCOMPATIBLE: i32 = 409;
    pub const INVALID_SCHEMA: i32 = 42201;
    pub const INVALID_VERSION: i32 = 42202;
    pub const INVALID_COMPATIBILITY_LEVEL: i32 = 42203;
    pub const INVALID_MODE: i32 = 42204;
    pub const OPERATION_NOT_PERMITTED: i32 = 42205;
    pub const REFERENCE_EXISTS: i32 = 42206;
    pub const STORE_ERROR: i32 = 50001;
    pub const TIMEOUT: i32 = 50002;
    /// Not a registry code: an unreadable request body (HTTP 422 with code 422).
    pub const UNPROCESSABLE: i32 = 422;
    pub const NOT_FOUND: i32 = 404;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: i32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: i32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn subject_not_found(subject: &str) -> ApiError {
        ApiError::new(
            404,
            code::SUBJECT_NOT_FOUND,
            format!("Subject '{subject}' not found."),
        )
    }

    pub fn version_not_found(subject: &str, version: &str) -> ApiError {
        ApiError::new(
            404,
            code::VERSION_NOT_FOUND,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }

    pub fn schema_not_found() -> ApiError {
        ApiError::new(404, code::SCHEMA_NOT_FOUND, "Schema not found")
    }

    pub fn invalid_schema(message: impl Into<String>) -> ApiError {
        ApiError::new(422, code::INVALID_SCHEMA, message)
    }

    pub fn invalid_version(version: &str) -> ApiError {
        ApiError::new(
            422,
            code::INVALID_VERSION,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    pub fn not_permitted(message: impl Into<String>) -> ApiError {
        ApiError::new(422, code::OPERATION_NOT_PERMITTED, message)
    }

    pub fn store(message: impl Into<String>) -> ApiError {
        ApiError::new(500, code::STORE_ERROR, message)
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(500, code::TIMEOUT, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, code::UNPROCESSABLE, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (error {})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}
