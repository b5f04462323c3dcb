//! What enqueue must know about a task before it inserts a job: whether it
//! is registered (and with an args schema) and which roles may enqueue it,
//! kept per session so that the single-job enqueue pays nothing to ask.

pub mod registered_tasks;
pub mod task_grants;
