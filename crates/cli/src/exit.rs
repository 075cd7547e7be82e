//! Exit statuses: 0 success, 1 failure, 2 usage errors and verbs not built yet.

use std::process::ExitCode;

/// A verb whose engine has not landed yet. It exits with status 2 and never pretends.
#[derive(Debug, thiserror::Error)]
#[error("`corral {verb}` is not implemented yet")]
pub struct NotImplemented {
    /// The verb as the user typed it, e.g. "vm start".
    pub verb: &'static str,
}

/// Print an error chain on stderr and choose the exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    // The daemon's 501: a feature it refuses because it is not built yet.
    let daemon_refused = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<corral_api::ClientError>(),
            Some(corral_api::ClientError::Api { status: 501, .. })
        )
    });
    if err.downcast_ref::<NotImplemented>().is_some() || daemon_refused {
        eprintln!("corral: {err}");
        return ExitCode::from(2);
    }
    eprintln!("corral: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::FAILURE
}

/// Shorthand for a verb that is not built yet.
pub fn not_implemented(verb: &'static str) -> anyhow::Result<ExitCode> {
    Err(NotImplemented { verb }.into())
}
