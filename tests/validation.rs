//! kiln's predictions against every public measured run the language can express
//! (`experiments/measured/`, generated from `../shared/reference/measured.yaml` by
//! `scripts/measured_kiln.py`), scored by `kiln validate` with its three constants fitted
//! leave-one-source-out. `docs/validation.md`, the README's summary table and the constants kiln ships
//! (`stdlib/fitted.json`) are regenerated here and must equal the committed
//! ones, so neither goes stale, and so must the scored rows `kiln report` embeds
//! (`stdlib/validation.json`): `KILN_UPDATE_VALIDATION=1 cargo test -p kiln-cli --test
//! validation` rewrites all four.

mod common;

/// Where `kiln validate` looks by default.
fn dirs() -> Vec<std::path::PathBuf> {
    [
        "experiments/measured",
        "experiments/reference",
        "experiments",
    ]
    .iter()
    .map(|d| common::root().join(d))
    .collect()
}

#[test]
fn the_validation_table_and_the_fitted_constants_are_current() {
    let cases = kiln::validate::load(&dirs()).unwrap();
    assert!(cases.len() >= 80, "{} measured runs expressed", cases.len());
    let report = kiln::validate::run(&cases);
    let markdown = report.markdown();
    let fitted = serde_json::to_string_pretty(&report.fitted()).unwrap() + "\n";
    let readme_path = common::root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let files = [
        (
            readme_path,
            with_summary(
                &with_summary(&readme, "validation", &report.summary_table()),
                "memory",
                &report.memory_table(),
            ),
        ),
        (common::root().join("docs/validation.md"), markdown),
        (common::root().join("stdlib/fitted.json"), fitted),
        (
            common::root().join("stdlib/validation.json"),
            serde_json::to_string_pretty(&report.rows()).unwrap() + "\n",
        ),
    ];
    for (path, text) in &files {
        if std::env::var_os("KILN_UPDATE_VALIDATION").is_some() {
            std::fs::write(path, text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            &committed == text,
            "{} is stale: run `KILN_UPDATE_VALIDATION=1 cargo test -p kiln-cli --test validation` \
             (and commit the files)",
            path.display()
        );
    }
}

/// The README with a held-out summary between its `<!-- NAME:begin -->` and
/// `<!-- NAME:end -->` markers.
fn with_summary(readme: &str, name: &str, table: &str) -> String {
    let (begin, end) = (
        format!("<!-- {name}:begin -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let (begin, end) = (begin.as_str(), end.as_str());
    let a = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README.md lacks its {name} markers"))
        + begin.len();
    let b = readme
        .find(end)
        .unwrap_or_else(|| panic!("README.md lacks its {name} markers"));
    format!("{}{table}{}", &readme[..a], &readme[b..])
}

/// The shipped constants are the ones fitted on every source (a fit that moved means the
/// model moved: regenerate, and the binary reads the new ones).
#[test]
fn kiln_ships_the_constants_fitted_on_every_source() {
    let cases = kiln::validate::load(&dirs()).unwrap();
    let report = kiln::validate::run(&cases);
    assert_eq!(
        report.all,
        kiln::analyse::time::fitted().calibration,
        "regenerate with KILN_UPDATE_VALIDATION=1 and rebuild"
    );
    assert_eq!(
        (report.fragmentation * 1000.0).round() / 1000.0,
        kiln::analyse::time::fitted().memory.fragmentation,
        "regenerate with KILN_UPDATE_VALIDATION=1 and rebuild"
    );
}
