//! The streaming readers, input expansion, malformed-line handling and the atomic writer.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_data::ingest::{
    count_documents, expand_inputs, max_line_bytes, Document, Format, Ingest, IngestConfig,
    IngestError, InputProblem, JsonlWriter,
};

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn read_all(config: &IngestConfig) -> (Vec<Document>, kiln_data::ingest::IngestReport) {
    let mut ingest = Ingest::open(config).unwrap();
    let docs = ingest.by_ref().map(|d| d.unwrap()).collect();
    (docs, ingest.into_report())
}

fn config(inputs: &[&Path]) -> IngestConfig {
    IngestConfig::new(inputs.iter().map(|p| p.to_path_buf()).collect())
}

fn id(path: &Path, line: u64) -> String {
    format!("{}:{line}", path.display())
}

#[test]
fn reads_jsonl_and_text_plain_and_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl.zst");
    let c = dir.path().join("c.txt");
    let d = dir.path().join("d.txt.zst");
    write(
        &a,
        b"{\"text\": \"one\", \"meta\": {\"x\": [1, 2]}}\n{\"text\": \"two\\nlines\"}\n",
    );
    write(&b, &zstd(b"{\"text\": \"three\"}\n{\"text\": \"four\"}"));
    write(
        &c,
        b"A plain text file.\n\nWith paragraphs, one document.\n",
    );
    write(&d, &zstd("Compressed text, ünïcode.".as_bytes()));

    let (docs, report) = read_all(&config(&[&a, &b, &c, &d]));
    let got: Vec<(String, String)> = docs.into_iter().map(|d| (d.id, d.text)).collect();
    assert_eq!(
        got,
        [
            (id(&a, 1), "one".to_string()),
            (id(&a, 2), "two\nlines".to_string()),
            (id(&b, 1), "three".to_string()),
            (id(&b, 2), "four".to_string()),
            (
                id(&c, 1),
                "A plain text file.\n\nWith paragraphs, one document.\n".to_string()
            ),
            (id(&d, 1), "Compressed text, ünïcode.".to_string()),
        ]
    );
    assert_eq!(
        (report.files, report.docs, report.malformed_lines),
        (4, 6, 0)
    );
    assert_eq!(count_documents(&config(&[&a, &b, &c, &d])).unwrap(), 6);
}

#[test]
fn concatenated_zstd_frames_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.jsonl.zst");
    let mut bytes = zstd(b"{\"text\": \"first frame\"}\n");
    bytes.extend(zstd(b"{\"text\": \"second frame\"}\n"));
    write(&path, &bytes);
    let (docs, _) = read_all(&config(&[&path]));
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].text, "second frame");
}

#[test]
fn the_text_field_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    write(&path, b"{\"text\": \"not this\", \"content\": \"this\"}\n");
    let mut cfg = config(&[&path]);
    cfg.text_field = "content".to_string();
    let (docs, _) = read_all(&cfg);
    assert_eq!(docs[0].text, "this");
}

#[test]
fn ids_carry_through_kiln_outputs_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    write(&path, b"{\"id\": \"raw/x.jsonl:7\", \"text\": \"a\"}\n{\"id\": 3, \"text\": \"b\"}\n{\"text\": \"c\"}\n");
    let (docs, _) = read_all(&config(&[&path]));
    assert_eq!(docs[0].id, id(&path, 1));
    let (docs, _) = read_all(&config(&[&path]).with_ids());
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    // A non-string or absent id falls back to PATH:LINE.
    assert_eq!(ids, ["raw/x.jsonl:7", &id(&path, 2), &id(&path, 3)]);
}

fn malformed_file(dir: &Path) -> PathBuf {
    let path = dir.join("bad.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"text\": \"good 1\"}\n"); // 1
    bytes.extend_from_slice(b"{\"text\": \"unterminated\n"); // 2
    bytes.extend_from_slice(b"[\"an\", \"array\"]\n"); // 3
    bytes.extend_from_slice(b"{\"body\": \"no text field\"}\n"); // 4
    bytes.extend_from_slice(b"{\"text\": null}\n"); // 5
    bytes.extend_from_slice(b"{\"text\": \"bad \xff byte\"}\n"); // 6
    bytes.extend_from_slice(b"\n"); // 7: blank, skipped silently
    bytes.extend_from_slice(b"{\"text\": \"good 2\"} trailing\n"); // 8
    bytes.extend_from_slice(b"{\"text\": \"good 3\"}"); // 9, no final newline
    write(&path, &bytes);
    path
}

#[test]
fn malformed_lines_are_counted_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = malformed_file(dir.path());
    let txt = dir.path().join("bad.txt");
    write(&txt, b"not \xc3\x28 utf-8");
    let (docs, report) = read_all(&config(&[&path, &txt]));
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["good 1", "good 3"]);
    assert_eq!(docs[1].id, id(&path, 9));
    assert_eq!(report.malformed_lines, 7);
    let summary: Vec<(PathBuf, u64, &str)> = report
        .malformed
        .iter()
        .map(|m| (m.path.clone(), m.line, m.reason.as_str()))
        .collect();
    let starts = |(p, l, r): &(PathBuf, u64, &str), path: &Path, line: u64, prefix: &str| {
        p == path && *l == line && r.starts_with(prefix)
    };
    let expected = [
        (&path, 2, "invalid JSON"),
        (&path, 3, "not a JSON object"),
        (&path, 4, "no field `text`"),
        (&path, 5, "field `text` is not a string"),
        (&path, 6, "invalid UTF-8 at byte"),
        (&path, 8, "invalid JSON: trailing characters"),
        (&txt, 1, "invalid UTF-8 at byte 4"),
    ];
    assert_eq!(summary.len(), expected.len(), "{summary:?}");
    for (got, (p, l, r)) in summary.iter().zip(expected) {
        assert!(
            starts(got, p, l, r),
            "{got:?} is not ({}, {l}, {r}…)",
            p.display()
        );
    }
}

#[test]
fn strict_mode_fails_at_the_first_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = malformed_file(dir.path());
    let mut cfg = config(&[&path]);
    cfg.strict = true;
    let mut ingest = Ingest::open(&cfg).unwrap();
    assert_eq!(ingest.next().unwrap().unwrap().text, "good 1");
    let err = ingest.next().unwrap().unwrap_err();
    assert!(matches!(err, IngestError::Malformed(_)));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}:2: malformed line: invalid JSON",
            path.display()
        )),
        "{message}"
    );
    assert!(ingest.next().is_none());
}

/// `{"text": "<n × a>"}` and a newline.
fn text_line(n: usize) -> Vec<u8> {
    format!("{{\"text\": \"{}\"}}\n", "a".repeat(n)).into_bytes()
}

#[test]
fn documents_above_the_limit_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 1000u64;
    let path = dir.path().join("a.jsonl");
    let mut bytes = text_line(1000); // 1: at the limit, kept
    bytes.extend(text_line(1001)); // 2: one byte over
                                   // 3: a line too long for any document within the limit, not even JSON: skipped as too
                                   // large without being held or parsed.
    bytes.extend(vec![b'x'; max_line_bytes(limit) as usize + 1]);
    bytes.push(b'\n');
    bytes.extend(text_line(3)); // 4
    bytes.extend(&text_line(2000)[..2012]); // 5: over the limit, no final newline
    write(&path, &bytes);
    let zst = dir.path().join("b.jsonl.zst");
    let mut zbytes = text_line(1001);
    zbytes.extend(text_line(7));
    write(&zst, &zstd(&zbytes));
    let at = dir.path().join("at.txt");
    write(&at, &vec![b'b'; 1000]);
    let over = dir.path().join("over.txt.zst");
    write(&over, &zstd(&vec![b'c'; 5000]));
    let mut cfg = config(&[&path, &zst, &at, &over]);
    cfg.max_document_bytes = limit;
    let (docs, report) = read_all(&cfg);
    let sizes: Vec<(String, usize)> = docs.iter().map(|d| (d.id.clone(), d.text.len())).collect();
    assert_eq!(
        sizes,
        [
            (id(&path, 1), 1000),
            (id(&path, 4), 3),
            (id(&zst, 2), 7),
            (id(&at, 1), 1000)
        ]
    );
    assert_eq!(
        (report.docs, report.malformed_lines, report.too_large_docs),
        (4, 0, 5)
    );
    let skipped: Vec<(PathBuf, u64, &str)> = report
        .too_large
        .iter()
        .map(|m| (m.path.clone(), m.line, m.reason.as_str()))
        .collect();
    let line3 = format!(
        "a line of {} bytes, longer than any document within the limit of 1000 bytes of text",
        max_line_bytes(limit) + 1
    );
    let expected = [
        (&path, 2, "1001 bytes of text, more than the limit of 1000"),
        (&path, 3, line3.as_str()),
        (&path, 5, "2000 bytes of text, more than the limit of 1000"),
        (&zst, 1, "1001 bytes of text, more than the limit of 1000"),
        (&over, 1, "5000 bytes of text, more than the limit of 1000"),
    ];
    assert_eq!(skipped.len(), expected.len(), "{skipped:?}");
    for (got, (p, l, r)) in skipped.iter().zip(expected) {
        assert!(got.0 == *p && got.1 == l && got.2.starts_with(r), "{got:?}");
    }
    // With strict, the first is an error.
    cfg.strict = true;
    let mut ingest = Ingest::open(&cfg).unwrap();
    assert_eq!(ingest.next().unwrap().unwrap().text.len(), 1000);
    let err = ingest.next().unwrap().unwrap_err();
    assert!(matches!(err, IngestError::TooLarge(_)), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:2: document too large: 1001 bytes",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn inputs_with_lines_but_no_document_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    write(&bad, b"\n{\"body\": 1}\n[1]\n");
    let mut ingest = Ingest::open(&config(&[&bad])).unwrap();
    let err = ingest.next().unwrap().unwrap_err();
    assert!(matches!(
        err,
        IngestError::NothingRead {
            malformed: 2,
            too_large: 0,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "no document could be read from `{}`: every line was skipped (2 malformed, 0 too \
             large); the first, line 2: no field `text`",
            bad.display()
        )
    );
    assert!(ingest.next().is_none());
    assert!(count_documents(&config(&[&bad])).is_err());
    // An input without lines is an empty corpus, not an error.
    let empty = dir.path().join("empty.jsonl");
    write(&empty, b"");
    let (docs, report) = read_all(&config(&[&empty]));
    assert!(docs.is_empty());
    assert_eq!(report.files, 1);
}

#[test]
fn missing_inputs_fail_before_any_work_naming_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    write(&good, b"{\"text\": \"x\"}\n");
    write(&dir.path().join("data.csv"), b"a,b\n");
    fs::create_dir(dir.path().join("empty")).unwrap();
    let missing = dir.path().join("missing.jsonl");
    let no_match = dir.path().join("shard-*.jsonl");
    let unknown = dir.path().join("data.csv");
    let empty = dir.path().join("empty");
    let star_dir = dir.path().join("d*").join("x.jsonl");
    let missing_dir = dir.path().join("nowhere").join("*.jsonl");
    let inputs: [&Path; 7] = [
        &good,
        &missing,
        &no_match,
        &unknown,
        &empty,
        &star_dir,
        &missing_dir,
    ];
    let err = Ingest::open(&config(&inputs)).err().expect("refused");
    let IngestError::Inputs(problems) = &err else {
        panic!("{err:?}")
    };
    let expected = [
        (&missing, InputProblem::Missing),
        (&no_match, InputProblem::NoFiles),
        (&unknown, InputProblem::UnknownFormat),
        (&empty, InputProblem::NoFiles),
        (&star_dir, InputProblem::PatternInDirectory),
        (&missing_dir, InputProblem::Missing),
    ];
    let got: Vec<(&PathBuf, &InputProblem)> = problems.iter().map(|(p, q)| (p, q)).collect();
    let want: Vec<(&PathBuf, &InputProblem)> = expected.iter().map(|(p, q)| (*p, q)).collect();
    assert_eq!(got, want);
    let message = err.to_string();
    for (path, _) in &expected {
        assert!(
            message.contains(&format!("`{}`", path.display())),
            "{message}"
        );
    }
    assert!(message.contains("does not exist"));
    assert!(matches!(
        Ingest::open(&config(&[])),
        Err(IngestError::NoInputs)
    ));
}

#[test]
fn directories_and_patterns_expand_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    for name in [
        "shard-2.jsonl.zst",
        "shard-1.jsonl",
        "other.jsonl",
        "notes.md",
        ".hidden.jsonl",
        "sub/x.txt",
    ] {
        write(&root.join(name), b"");
    }
    // A writer's leftover temporary file (a killed step) is hidden, so never an input.
    write(&root.join(".out.jsonl.tmp-123"), b"{\"text\": \"half");

    let names = |inputs: &[PathBuf]| -> Vec<String> {
        expand_inputs(inputs)
            .unwrap()
            .into_iter()
            .map(|f| f.path.strip_prefix(&root).unwrap().display().to_string())
            .collect()
    };
    assert_eq!(
        names(&[root.join("shard-*")]),
        ["shard-1.jsonl", "shard-2.jsonl.zst"]
    );
    assert_eq!(
        names(std::slice::from_ref(&root)),
        [
            "other.jsonl",
            "shard-1.jsonl",
            "shard-2.jsonl.zst",
            "sub/x.txt"
        ]
    );
    // A file named twice is read once, where first named.
    assert_eq!(
        names(&[
            root.join("other.jsonl"),
            root.join("*.jsonl"),
            root.join("other.jsonl")
        ]),
        ["other.jsonl", "shard-1.jsonl"]
    );
    let files = expand_inputs(&[root.join("sub/x.txt"), root.join("shard-2.jsonl.zst")]).unwrap();
    assert_eq!((files[0].format, files[0].zstd), (Format::Text, false));
    assert_eq!((files[1].format, files[1].zstd), (Format::Jsonl, true));
}

#[test]
fn reading_streams_one_file_and_one_line_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let mut big = Vec::new();
    for i in 0..10_000 {
        writeln!(big, "{{\"text\": \"document {i}\"}}").unwrap();
    }
    write(&a, &big);
    write(&b, b"{\"text\": \"last\"}\n");
    let mut ingest = Ingest::open(&config(&[&a, &b])).unwrap();
    assert_eq!(ingest.report().files, 0);
    assert_eq!(ingest.next().unwrap().unwrap().text, "document 0");
    // The second file is not opened, nor the first read ahead, before they are needed.
    assert_eq!((ingest.report().files, ingest.report().docs), (1, 1));
    assert_eq!(ingest.by_ref().count(), 10_000);
    assert_eq!((ingest.report().files, ingest.report().docs), (2, 10_001));
}

#[test]
fn a_corrupt_zstd_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jsonl.zst");
    let mut bytes = zstd(b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
    bytes.truncate(bytes.len() - 4);
    bytes.extend_from_slice(b"junk");
    write(&path, &bytes);
    let results: Vec<_> = Ingest::open(&config(&[&path])).unwrap().collect();
    let err = results.into_iter().find_map(Result::err).expect("an error");
    assert!(matches!(err, IngestError::Io { .. }));
    assert!(err.to_string().contains("broken.jsonl.zst"), "{err}");
}

#[test]
fn the_writer_renames_a_complete_file_into_place() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["out/x.jsonl", "out/y.jsonl.zst"] {
        let dest = dir.path().join(name);
        let docs = [
            Document {
                id: "a:1".into(),
                text: "first \"quoted\"\nline".into(),
            },
            Document {
                id: "a:2".into(),
                text: "second ünïcode".into(),
            },
        ];
        let mut writer = JsonlWriter::create(&dest).unwrap();
        for d in &docs {
            writer.write(d).unwrap();
        }
        let temp = writer.temp_path().to_path_buf();
        assert!(temp.exists() && !dest.exists());
        assert!(temp.file_name().unwrap().to_str().unwrap().starts_with('.'));
        assert_eq!(temp.parent(), dest.parent());
        assert_eq!(writer.finish().unwrap(), 2);
        assert!(dest.exists() && !temp.exists());
        let (read, _) = read_all(&config(&[&dest]).with_ids());
        assert_eq!(read, docs);
    }
}

#[test]
fn an_unfinished_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("z.jsonl.zst");
    let mut writer = JsonlWriter::create(&dest).unwrap();
    writer
        .write(&Document {
            id: "1".into(),
            text: "x".into(),
        })
        .unwrap();
    let temp = writer.temp_path().to_path_buf();
    drop(writer);
    assert!(!dest.exists() && !temp.exists());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    let err = JsonlWriter::create(&dir.path().join("out.txt"))
        .err()
        .unwrap();
    assert!(matches!(err, IngestError::OutputFormat(_)));
    assert!(err.to_string().contains("out.txt"));
}
