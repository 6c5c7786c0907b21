//! SQS message bodies to object references (filled in by the worker issue).
