//! Settings of `qp scale`.

/// Variables `qp scale` cannot run without; terraform must set each (checked by a test).
pub const REQUIRED_ENV: &[&str] = &[
    "QP_QUEUE_URL",
    "QP_CLUSTER",
    "QP_TASK_DEFINITION",
    "QP_CONTAINER_NAME",
    "QP_SUBNETS",
    "QP_SECURITY_GROUPS",
];
