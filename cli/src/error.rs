//! The one failure type of the `kiln` command and the exit status each kind of failure gets,
//! decided here and nowhere else: 0 success, 1 the input was refused (diagnostics with errors,
//! a formatting difference, a failed step), 2 the command could not do its work (unreadable
//! or unwritable files, a missing program, a file that is not what the command takes).

use std::fmt;
use std::process::ExitCode;

#[derive(Debug)]
pub enum Failure {
    /// The input was refused; the message, if any, says why (diagnostics print themselves).
    Refused(Option<String>),
    /// The command could not do its work.
    Unusable(String),
}

/// What a command returns.
pub type Outcome = Result<(), Failure>;

impl Failure {
    pub fn refused(why: impl Into<String>) -> Failure {
        Failure::Refused(Some(why.into()))
    }

    pub fn unusable(why: impl Into<String>) -> Failure {
        Failure::Unusable(why.into())
    }

    pub fn code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Unusable(_) => 2,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(Some(why)) | Failure::Unusable(why) => f.write_str(why),
            Failure::Refused(None) => Ok(()),
        }
    }
}

/// Prints a failure's message (as `error: …`) and gives the process its exit status.
pub fn exit(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !matches!(failure, Failure::Refused(None)) {
                eprintln!("error: {failure}");
            }
            ExitCode::from(failure.code())
        }
    }
}
