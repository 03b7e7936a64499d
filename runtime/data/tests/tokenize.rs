//! Tokenizer training and encoding (determinism across runs and thread counts, round
//! trips, the vocabulary layout, agreement with Python `tokenizers` on the saved file) and
//! the token shards (Megatron-LM's indexed format byte by byte, read back by kiln and by
//! Megatron-LM's own `IndexedDataset`, corrupt files refused).
//!
//! The corpus is the same on every machine: the committed license texts
//! (`tests/fixtures/common-licenses`), generated Python-like modules, and sentences in
//! other scripts. The Python checks use the project's `.venv` (`bash scripts/setup`).

#[path = "reference/corpus.rs"]
mod corpus;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_data::shards::{
    dataset_paths, encode_texts, IndexedDataset, IndexedWriter, ShardEncoder, ShardError,
    TokenDtype, INDEX_MAGIC,
};
use kiln_data::tokenize::{
    self, eod_token, train_texts, ModelKind, Pretokenize, TrainConfig, EOD_TOKEN, UNK_TOKEN,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Sentences in scripts the licenses lack, so Metaspace needs its byte fallback.
const MULTILINGUAL: [&str; 6] = [
    "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller staatlichen Gewalt.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "人人生而自由，在尊严和权利上一律平等。",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
];

/// Python-like modules in the corpus.
const CODE_DOCS: u64 = 12;

/// License texts, generated code, the multilingual sentences.
fn corpus() -> Vec<String> {
    let mut docs: Vec<String> = corpus::license_texts()
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    docs.sort();
    docs.dedup();
    for seed in 0..CODE_DOCS {
        docs.push(corpus::python_module(&mut corpus::Rng(seed)));
    }
    docs.extend(MULTILINGUAL.iter().map(|s| s.to_string()));
    docs
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

const CONFIGS: [(ModelKind, Pretokenize); 4] = [
    (ModelKind::Bpe, Pretokenize::ByteLevel),
    (ModelKind::Bpe, Pretokenize::Metaspace),
    (ModelKind::Unigram, Pretokenize::Metaspace),
    (ModelKind::Unigram, Pretokenize::ByteLevel),
];

fn config(kind: ModelKind, pretokenize: Pretokenize, vocab: u64) -> TrainConfig {
    TrainConfig {
        kind,
        vocab_size: vocab,
        pretokenize,
    }
}

fn train_json(docs: &[String], cfg: TrainConfig, threads: usize) -> String {
    let (tok, _) = pool(threads)
        .install(|| train_texts(docs, cfg))
        .expect("training succeeds");
    tok.to_string(true).expect("serialise")
}

#[test]
fn training_is_deterministic_across_runs_and_thread_counts() {
    let docs = corpus();
    for (kind, pre) in CONFIGS {
        let cfg = config(kind, pre, 1000);
        let one = train_json(&docs, cfg, 1);
        let two = train_json(&docs, cfg, 2);
        let again = train_json(&docs, cfg, 2);
        // Not assert_eq!: the files are long.
        assert!(
            one == two,
            "{kind:?}/{pre:?}: 1 and 2 threads trained different files"
        );
        assert!(
            two == again,
            "{kind:?}/{pre:?}: two runs trained different files"
        );
    }
}

#[test]
fn vocabulary_layout_and_size() {
    let docs = corpus();
    for (kind, pre) in CONFIGS {
        let (tok, report) = train_texts(&docs, config(kind, pre, 1000)).unwrap();
        assert_eq!(report.vocab_size, 1000, "{kind:?}/{pre:?}: {report:?}");
        assert_eq!(tok.get_vocab_size(true), 1000, "{kind:?}/{pre:?}");
        assert_eq!(tok.token_to_id(EOD_TOKEN), Some(0));
        assert_eq!(eod_token(&tok), Some((EOD_TOKEN, 0)));
        let has_unk = kind == ModelKind::Unigram || pre == Pretokenize::Metaspace;
        assert_eq!(
            tok.token_to_id(UNK_TOKEN),
            has_unk.then_some(1),
            "{kind:?}/{pre:?}"
        );
        if pre == Pretokenize::Metaspace {
            assert_eq!(tok.token_to_id("<0x00>"), Some(2));
            assert_eq!(tok.token_to_id("<0xFF>"), Some(257));
            assert!(report.byte_fallback);
            // The alphabet covers 99.95 % of characters, so some rare ones are left out.
            assert!(report.alphabet <= report.characters_seen);
        }
    }
    // Too small a vocabulary is an error, not a panic.
    let err = train_texts(&docs, config(ModelKind::Bpe, Pretokenize::ByteLevel, 100)).unwrap_err();
    assert!(err.to_string().contains("at least 257"), "{err}");
    let err = train_texts(
        &[String::new()],
        config(ModelKind::Bpe, Pretokenize::ByteLevel, 300),
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

/// Texts the tokenizer never saw, scripts and symbols included.
fn unseen_texts() -> Vec<String> {
    vec![
        "Ein völlig neuer Satz mit Umlauten: äöüß, und Zahlen 12345.".into(),
        "def held_out(x):\n    return {\"k\": [x, 2.5e-3]}  # ✓\n".into(),
        "emoji 🦀🔥 and CJK 漢字 and Hangul 한국어 and a literal <0x41> and \t tabs".into(),
        "  leading spaces and trailing spaces  ".into(),
        "line one\n\nline three\r\n".into(),
    ]
}

#[test]
fn decoding_inverts_encoding() {
    let docs = corpus();
    for (kind, pre) in CONFIGS {
        let (tok, _) = train_texts(&docs, config(kind, pre, 1000)).unwrap();
        let unk = tok.token_to_id(UNK_TOKEN);
        let mut texts = unseen_texts();
        texts.extend(MULTILINGUAL.iter().map(|s| s.to_string()));
        for text in &texts {
            if pre == Pretokenize::Metaspace && text.starts_with(' ') {
                // SentencePiece's decoder drops the one space it prepended; a text that
                // starts with spaces loses one of them (as in Llama 2's tokenizer).
                continue;
            }
            let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            assert!(
                unk.is_none_or(|u| !ids.contains(&u)),
                "{kind:?}/{pre:?}: byte fallback and byte-level words leave nothing unknown: {text:?}"
            );
            let back = tok.decode(&ids, false).unwrap();
            assert_eq!(&back, text, "{kind:?}/{pre:?}");
        }
    }
}

/// The project's Python with `tokenizers` and `megatron.core`, if set up.
fn python() -> PathBuf {
    let py = workspace_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run bash scripts/setup",
        py.display()
    );
    py
}

fn run_python(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn python_tokenizers_loads_the_file_and_encodes_identically() {
    let docs = corpus();
    let dir = tempfile::tempdir().unwrap();
    let texts = unseen_texts();
    let texts_path = dir.path().join("texts.json");
    fs::write(&texts_path, serde_json::to_string(&texts).unwrap()).unwrap();
    for (i, (kind, pre)) in CONFIGS.into_iter().enumerate() {
        let (tok, _) = train_texts(&docs, config(kind, pre, 1000)).unwrap();
        let tok_dir = dir.path().join(format!("tok{i}"));
        tokenize::save(&tok, &tok_dir).unwrap();
        let loaded = tokenize::load(&tok_dir).unwrap();
        let ours: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| loaded.encode(t.as_str(), false).unwrap().get_ids().to_vec())
            .collect();
        let theirs = run_python(
            "import json, sys, tokenizers\n\
             t = tokenizers.Tokenizer.from_file(sys.argv[1])\n\
             texts = json.load(open(sys.argv[2]))\n\
             print(json.dumps([e.ids for e in t.encode_batch(texts, add_special_tokens=False)]))",
            &[
                tok_dir.join("tokenizer.json").to_str().unwrap(),
                texts_path.to_str().unwrap(),
            ],
        );
        let theirs: Vec<Vec<u32>> = serde_json::from_str(theirs.trim()).unwrap();
        assert_eq!(ours, theirs, "{kind:?}/{pre:?}");
        let config: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(tok_dir.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["eos_token"], EOD_TOKEN);
    }
}

#[test]
fn indexed_dataset_format_byte_by_byte() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("text_document");
    let mut w = IndexedWriter::create(&prefix, TokenDtype::Uint16).unwrap();
    w.add_document(&[5, 6, 0]).unwrap();
    w.add_document(&[0]).unwrap();
    w.add_document(&[65535, 7, 0]).unwrap();
    // Nothing is visible before finish.
    let (bin, idx) = dataset_paths(&prefix);
    assert!(!bin.exists() && !idx.exists());
    let summary = w.finish().unwrap();
    assert_eq!((summary.documents, summary.tokens), (3, 7));
    let b = fs::read(&bin).unwrap();
    assert_eq!(b, [5, 0, 6, 0, 0, 0, 0, 0, 255, 255, 7, 0, 0, 0]);
    let i = fs::read(&idx).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(b"MMIDIDX\x00\x00");
    want.extend_from_slice(&1u64.to_le_bytes());
    want.push(8); // uint16
    want.extend_from_slice(&3u64.to_le_bytes());
    want.extend_from_slice(&4u64.to_le_bytes());
    for len in [3i32, 1, 3] {
        want.extend_from_slice(&len.to_le_bytes());
    }
    for ptr in [0i64, 6, 8] {
        want.extend_from_slice(&ptr.to_le_bytes());
    }
    for d in [0i64, 1, 2, 3] {
        want.extend_from_slice(&d.to_le_bytes());
    }
    assert_eq!(i, want);
    assert_eq!(&i[..9], &INDEX_MAGIC);

    let ds = IndexedDataset::open(&prefix).unwrap();
    assert_eq!(ds.documents(), 3);
    assert_eq!(ds.tokens(), 7);
    assert_eq!(ds.document(0), vec![5, 6, 0]);
    assert_eq!(ds.document(1), vec![0]);
    assert_eq!(ds.document(2), vec![65535, 7, 0]);
    assert_eq!(ds.document(3), Vec::<u32>::new());

    // An id that does not fit the dtype is an error.
    let mut w = IndexedWriter::create(&dir.path().join("small"), TokenDtype::Uint16).unwrap();
    assert!(matches!(
        w.add_document(&[70_000]),
        Err(ShardError::OutOfRange(_))
    ));
    drop(w);
    // A dropped writer leaves nothing, not even its hidden temporary files.
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(TokenDtype::for_vocab(65_499), TokenDtype::Uint16);
    assert_eq!(TokenDtype::for_vocab(65_500), TokenDtype::Int32);
}

#[test]
fn corrupt_datasets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("d");
    let mut w = IndexedWriter::create(&prefix, TokenDtype::Int32).unwrap();
    w.add_document(&[1, 2, 3]).unwrap();
    w.add_document(&[100_000, 0]).unwrap();
    w.finish().unwrap();
    let ds = IndexedDataset::open(&prefix).unwrap();
    assert_eq!(ds.document(1), vec![100_000, 0]);
    let (bin, idx) = dataset_paths(&prefix);
    let good_idx = fs::read(&idx).unwrap();
    let good_bin = fs::read(&bin).unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "magic",
            [b"XXIDIDX\x00\x00".as_slice(), &good_idx[9..]].concat(),
            good_bin.clone(),
        ),
        (
            "truncated",
            good_idx[..good_idx.len() - 3].to_vec(),
            good_bin.clone(),
        ),
        ("header", good_idx[..20].to_vec(), good_bin.clone()),
        (
            "dtype",
            {
                let mut v = good_idx.clone();
                v[17] = 6;
                v
            },
            good_bin.clone(),
        ),
        (
            "version",
            {
                let mut v = good_idx.clone();
                v[9] = 2;
                v
            },
            good_bin.clone(),
        ),
        (
            "bin size",
            good_idx.clone(),
            good_bin[..good_bin.len() - 4].to_vec(),
        ),
        (
            "pointer",
            {
                let mut v = good_idx.clone();
                v[34 + 8 + 8] = 9;
                v
            },
            good_bin.clone(),
        ),
        (
            "length",
            {
                let mut v = good_idx.clone();
                v[37] = 0x80;
                v
            },
            good_bin.clone(),
        ),
    ];
    for (what, i, b) in cases {
        fs::write(&idx, &i).unwrap();
        fs::write(&bin, &b).unwrap();
        match IndexedDataset::open(&prefix) {
            Err(ShardError::Format { why, .. }) => assert!(!why.is_empty(), "{what}"),
            Err(other) => panic!("{what}: unexpected error {other}"),
            Ok(_) => panic!("{what}: a corrupt dataset was accepted"),
        }
    }
    fs::remove_file(&idx).unwrap();
    assert!(matches!(
        IndexedDataset::open(&prefix),
        Err(ShardError::Io { .. })
    ));
}

fn encode_to_bytes(
    docs: &[String],
    tok: &tokenize::Tokenizer,
    threads: usize,
    dir: &Path,
) -> (Vec<u8>, Vec<u8>) {
    let prefix = dir.join(format!("enc{threads}"));
    pool(threads).install(|| {
        let mut enc = ShardEncoder::create(tok, 0, &prefix).unwrap();
        for batch in docs.chunks(7) {
            enc.add_batch(batch).unwrap();
        }
        enc.finish().unwrap();
    });
    let (bin, idx) = dataset_paths(&prefix);
    (fs::read(bin).unwrap(), fs::read(idx).unwrap())
}

#[test]
fn shards_are_identical_for_any_thread_count_and_read_back() {
    let docs = corpus();
    let (tok, _) =
        train_texts(&docs, config(ModelKind::Bpe, Pretokenize::ByteLevel, 1000)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let one = encode_to_bytes(&docs, &tok, 1, dir.path());
    let two = encode_to_bytes(&docs, &tok, 2, dir.path());
    assert!(one == two, "1 and 2 threads wrote different shards");
    let ds = IndexedDataset::open(&dir.path().join("enc2")).unwrap();
    assert_eq!(ds.documents(), docs.len());
    let expected = encode_texts(&tok, &docs, Some(0)).unwrap();
    for (d, want) in expected.iter().enumerate() {
        assert_eq!(&ds.document(d), want, "document {d}");
        assert_eq!(want.last(), Some(&0), "every document ends with EOD");
        let text = tok.decode(&want[..want.len() - 1], false).unwrap();
        assert_eq!(text, docs[d]);
    }
}

#[test]
fn megatron_reads_the_shards() {
    let docs = corpus();
    let (tok, _) = train_texts(&docs, config(ModelKind::Bpe, Pretokenize::Metaspace, 700)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("text_document");
    let mut enc = ShardEncoder::create(&tok, 0, &prefix).unwrap();
    enc.add_batch(&docs).unwrap();
    enc.finish().unwrap();
    let expected = encode_texts(&tok, &docs, Some(0)).unwrap();
    let theirs = run_python(
        "import json, sys\n\
         from megatron.core.datasets.indexed_dataset import IndexedDataset\n\
         ds = IndexedDataset(sys.argv[1])\n\
         assert list(ds.document_indices) == list(range(len(ds) + 1))\n\
         print(json.dumps({'dtype': str(ds[0].dtype), 'docs': [ds[i].tolist() for i in range(len(ds))]}))",
        &[prefix.to_str().unwrap()],
    );
    let theirs: serde_json::Value = serde_json::from_str(theirs.trim()).unwrap();
    assert_eq!(theirs["dtype"], "uint16");
    let docs_read: Vec<Vec<u32>> = serde_json::from_value(theirs["docs"].clone()).unwrap();
    assert_eq!(docs_read, expected);
}

/// `kiln data tokenize/dedup/filter` as the `kiln` binary parses them.
#[derive(clap::Parser)]
struct DataCli {
    #[command(subcommand)]
    cmd: kiln_data::cli::DataCommand,
}

fn data(args: &[&str]) -> Result<serde_json::Value, kiln_data::cli::Failure> {
    use clap::Parser;
    let cli = DataCli::try_parse_from(std::iter::once("data").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    kiln_data::cli::execute(&cli.cmd)
}

#[test]
fn the_data_commands() {
    let dir = tempfile::tempdir().unwrap();
    let docs = corpus();
    let input = dir.path().join("in.jsonl");
    let mut lines = String::new();
    for d in docs.iter().chain(docs.iter().take(3)) {
        lines += &(serde_json::json!({ "text": d }).to_string() + "\n");
    }
    fs::write(&input, lines).unwrap();
    let inp = input.to_str().unwrap();

    let dedup_out = dir.path().join("dedup.jsonl");
    let s = data(&[
        "dedup",
        inp,
        "--out",
        dedup_out.to_str().unwrap(),
        "--format",
        "json",
    ])
    .unwrap();
    assert_eq!(s["input_docs"], docs.len() + 3);
    assert_eq!(s["removed"]["exact"], 3);
    assert_eq!(
        s["kept_docs"].as_u64().unwrap() + s["removed"]["near"].as_u64().unwrap(),
        docs.len() as u64
    );
    assert!(dedup_out.exists());

    let filter_out = dir.path().join("filtered.jsonl.zst");
    let s = data(&[
        "filter",
        dedup_out.to_str().unwrap(),
        "--out",
        filter_out.to_str().unwrap(),
        "--rules",
        "gopher,c4",
    ])
    .unwrap();
    assert!(s["kept_docs"].as_u64().unwrap() <= s["input_docs"].as_u64().unwrap());
    assert!(filter_out.exists());

    let tok_out = dir.path().join("tok");
    let s = data(&[
        "tokenize",
        inp,
        "--out",
        tok_out.to_str().unwrap(),
        "--vocab",
        "600",
        "--threads",
        "2",
    ])
    .unwrap();
    assert_eq!(s["input_docs"], docs.len() + 3);
    assert_eq!(s["kept_docs"], docs.len() + 3);
    assert_eq!(s["tokenizer"]["vocab_size"], 600);
    let ds = IndexedDataset::open(&tok_out.join("text_document")).unwrap();
    assert_eq!(ds.documents(), docs.len() + 3);
    assert_eq!(s["tokens"], ds.tokens());
    // Encoding with the saved tokenizer gives the same shards.
    let again = dir.path().join("again");
    let tok_file = tok_out.join("tokenizer.json");
    data(&[
        "tokenize",
        inp,
        "--out",
        again.to_str().unwrap(),
        "--tokenizer",
        tok_file.to_str().unwrap(),
    ])
    .unwrap();
    for ext in ["bin", "idx"] {
        let a = fs::read(tok_out.join(format!("text_document.{ext}"))).unwrap();
        let b = fs::read(again.join(format!("text_document.{ext}"))).unwrap();
        assert!(a == b, "text_document.{ext}");
    }
    // Unusable inputs and rules are exit code 2.
    let missing = data(&[
        "dedup",
        "/no/such.jsonl",
        "--out",
        dedup_out.to_str().unwrap(),
    ])
    .unwrap_err();
    assert_eq!(missing.1, 2, "{missing}");
    let rule = data(&[
        "filter",
        inp,
        "--out",
        filter_out.to_str().unwrap(),
        "--rules",
        "nope",
    ])
    .unwrap_err();
    assert_eq!(rule.1, 2, "{rule}");
}

#[test]
fn pieces_give_the_whole_texts_words_and_ids() {
    use kiln_data::tokenize::{encodes_in_pieces, Pieces, PIECE_BYTES};
    let docs = corpus();
    // Pieces far smaller than kiln's: every document is cut many times.
    fn cut(d: &str) -> Vec<&str> {
        Pieces::with_size(d, 40, 4096).collect()
    }
    let pieces: Vec<&str> = docs.iter().flat_map(|d| cut(d)).collect();
    assert!(pieces.len() > 20 * docs.len(), "{} pieces", pieces.len());
    for d in &docs {
        assert_eq!(cut(d).concat(), *d);
        for p in cut(d).iter().skip(1) {
            assert!(p.starts_with(' '), "a piece starts at a space: {p:?}");
        }
    }
    for (kind, pre) in CONFIGS {
        let cfg = config(kind, pre, 600);
        // Training on the pieces as documents counts the same words: the same tokenizer.
        let (whole, _) = train_texts(&docs, cfg).unwrap();
        let (from_pieces, _) = train_texts(&pieces, cfg).unwrap();
        assert!(
            whole.to_string(false).unwrap() == from_pieces.to_string(false).unwrap(),
            "{kind:?}/{pre:?}: the pieces trained another tokenizer"
        );
        // Encoding piece by piece gives the whole text's ids.
        assert!(encodes_in_pieces(&whole), "{kind:?}/{pre:?}");
        for d in &docs {
            let ids = whole
                .encode_fast(d.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            let mut joined = Vec::new();
            for p in cut(d) {
                joined.extend_from_slice(whole.encode_fast(p, false).unwrap().get_ids());
            }
            assert_eq!(ids, joined, "{kind:?}/{pre:?}");
        }
    }
    // A document longer than a piece, through the encoder kiln uses.
    let (tok, _) = train_texts(&docs, config(ModelKind::Bpe, Pretokenize::ByteLevel, 600)).unwrap();
    let long = docs
        .iter()
        .cycle()
        .take(40)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(long.len() > 4 * PIECE_BYTES);
    let whole = tok
        .encode_fast(long.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    let encoded = encode_texts(&tok, &[long.as_str()], None).unwrap();
    assert!(encoded[0] == whole, "the long document's ids differ");
    // A tokenizer kiln did not train (here: with a normalizer) is encoded whole.
    let mut json: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
    json["normalizer"] = serde_json::json!({ "type": "Lowercase" });
    let other: tokenize::Tokenizer = serde_json::from_value(json).unwrap();
    assert!(!encodes_in_pieces(&other));
}
