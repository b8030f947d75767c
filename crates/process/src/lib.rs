//! What every Weir binary does alike, written once:
//! - [`shutdown_signal`]: the future a server runs until (Ctrl-C or SIGTERM, which is what
//!   Kubernetes sends before it kills a pod);
//! - [`fatal`]: the exit for a broken environment (an fsync that failed), where carrying on
//!   could lose acknowledged data.

/// The exit status of [`fatal`] (`EX_SOFTWARE`): a supervisor restarts the process, and the
/// status tells a person it did not stop on request.
pub const FATAL_EXIT_CODE: i32 = 70;

/// Completes on Ctrl-C or SIGTERM. If SIGTERM cannot be listened for, Ctrl-C still works and
/// a warning says so.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Stops the process on a broken environment, with a message giving `context` and every cause
/// of `e`, logged and on stderr (the log may be what broke).
pub fn fatal(context: &str, e: &dyn std::error::Error) -> ! {
    let msg = fatal_message(context, e);
    tracing::error!("{msg}");
    eprintln!("{msg}");
    std::process::exit(FATAL_EXIT_CODE)
}

fn fatal_message(context: &str, e: &dyn std::error::Error) -> String {
    let mut msg = format!("fatal: {context}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("writing /d/x")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Proves: the fatal message names the context and every cause, outermost first.
    #[test]
    fn the_fatal_message_names_every_cause() {
        let e = Outer(std::io::Error::other("no space"));
        assert_eq!(
            fatal_message("fsync", &e),
            "fatal: fsync: writing /d/x: no space"
        );
    }
}
