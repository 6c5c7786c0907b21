//! Why an object or a message failed for good (or, for [`FailureReason::Transient`], for now): one
//! name per cause. [`FailureReason::as_str`] is what the logs, the metrics and the DLQ's
//! `qp_reason` attribute carry, and what `qp redrive --reason` and `qp status` read back, so the
//! strings never change.

/// The stable name of a failure's cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    // The image itself (`crate::image::ImageError`).
    NotImage,
    UnsupportedFormat,
    Truncated,
    TooLarge,
    Unsupported,
    Corrupt,
    Internal,
    // The message body (`crate::event::EventError`).
    BadBody,
    BadKey,
    // The source object (`qp work`'s GET).
    ObjectGone,
    ObjectTooLarge,
    ObjectArchived,
    /// May succeed later: the message is left to come back.
    Transient,
}

impl FailureReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotImage => "not_image",
            FailureReason::UnsupportedFormat => "unsupported_format",
            FailureReason::Truncated => "truncated",
            FailureReason::TooLarge => "too_large",
            FailureReason::Unsupported => "unsupported",
            FailureReason::Corrupt => "corrupt",
            FailureReason::Internal => "internal",
            FailureReason::BadBody => "bad_body",
            FailureReason::BadKey => "bad_key",
            FailureReason::ObjectGone => "object_gone",
            FailureReason::ObjectTooLarge => "object_too_large",
            FailureReason::ObjectArchived => "object_archived",
            FailureReason::Transient => "transient",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compared with the name it carries (`qp redrive --reason`, tests).
impl PartialEq<&str> for FailureReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
