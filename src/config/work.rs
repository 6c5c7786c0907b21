//! Settings of `qp work`.

/// Variables `qp work` cannot run without; terraform must set each (checked by a test).
pub const REQUIRED_ENV: &[&str] = &["QP_QUEUE_URL", "QP_DEST_BUCKET"];
