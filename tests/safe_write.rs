//! Every file kiln writes goes through one safe-write rule (issue 11): nothing a user owns is replaced by accident.
