//! Hostile input: imports, paths, sizes and budgets that must give a diagnostic, not a hang, a panic or an inconsistent plan (issue 11).
