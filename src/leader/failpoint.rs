//! Fault-injection points: the steps of producing one block, by name.

/// The steps of producing one block, named for fault injection
/// (`CLNODE_FAILPOINT_STOP_AT=<name>` freezes the whole process the first
/// time the leader reaches that step; SIGCONT resumes it). Unset in
/// production; the fault suite uses it to freeze a leader at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// After forkchoiceUpdated with attributes.
    Build,
    /// After getPayload.
    Payload,
    /// After newPayload answered VALID.
    Execute,
    /// After the lease check, just before the commit statement.
    Commit,
    /// After the commit, before forkchoiceUpdated to the new head.
    Canonical,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::Build, Step::Payload, Step::Execute, Step::Commit, Step::Canonical];

    pub fn name(self) -> &'static str {
        match self {
            Step::Build => "build",
            Step::Payload => "payload",
            Step::Execute => "execute",
            Step::Commit => "commit",
            Step::Canonical => "canonical",
        }
    }

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }
}
