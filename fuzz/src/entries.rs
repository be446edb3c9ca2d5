//! What each fuzz target feeds one input to, and what it then checks of
//! the answer. A parser of client input must answer (a value or a typed
//! error) and never panic; beyond that, each entry asserts what callers
//! rely on (a name stays inside its directory, a range ends inside the
//! blob, what the server stores the prune can read). A panic here is a
//! finding.
//!
//! This one file serves both the fuzz targets (`fuzz/fuzz_targets/`,
//! through this crate) and the ordinary test that replays every stored
//! input (`tests/fuzz_regressions.rs`, which includes it by `#[path]`),
//! so both run exactly the same code, and the test needs no cargo-fuzz.

use std::path::Path;

use speculative_images::oci::{
    media_type, Children, Digest, Manifest, ManifestReference, Reference, RepositoryName, Tag,
};
use speculative_images::registry::auth::{htpasswd, parse_scope, token};
use speculative_images::registry::errors::ErrorCode;
use speculative_images::registry::routes::{path, range};
use speculative_images::registry::storage::check_manifest;

/// An entry: takes one input.
pub type Entry = fn(&[u8]);

/// Every target by name: the name of its file under `fuzz/fuzz_targets/`
/// and of its directory under `fuzz/regressions/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("names", names),
    ("references", references),
    ("digests", digests),
    ("manifests", manifests),
    ("ranges", ranges),
    ("htpasswd", htpasswd),
    ("tokens", tokens),
];

/// Headers, paths and files arrive as text; bytes that are not UTF-8 are
/// replaced rather than skipped, so that every input exercises the parser.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Repository names and tags, alone and inside a request path.
pub fn names(data: &[u8]) {
    let text = text(data);
    if let Ok(name) = text.parse::<RepositoryName>() {
        assert_eq!(name.as_str(), text);
        assert!(name.as_str().len() <= speculative_images::oci::name::MAX_NAME_LEN);
        // Storage makes a directory of each component, beside its own
        // `_manifests` and `_deleted_blobs`.
        for component in name.components() {
            assert!(
                !component.is_empty() && component != "." && component != "..",
                "{text:?} has the component {component:?}"
            );
            assert!(!component.starts_with('_'), "{text:?}: {component:?}");
        }
    }
    if let Ok(tag) = text.parse::<Tag>() {
        assert_eq!(tag.as_str(), text);
        // A tag is a file name under `tags/`.
        assert!(tag.as_str().len() <= 128 && !tag.as_str().contains('/'));
        assert!(!tag.as_str().starts_with('.'), "{text:?}");
    }
    // The router finds the name in the path and refuses it by its code.
    for request_path in [text.clone(), format!("/v2/{text}")] {
        if let Some(Err(error)) = path::parse(&request_path) {
            assert_eq!(error.code, ErrorCode::NameInvalid, "{request_path:?}");
        }
    }
}

/// Image references and the `<reference>` of a manifest path.
pub fn references(data: &[u8]) {
    let text = text(data);
    if let Ok(reference) = text.parse::<Reference>() {
        // What we print (in messages, in artifacts' `url`) reads back as
        // the same reference.
        let shown = reference.to_string();
        let again: Reference = shown
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} shows as {shown:?}, which does not parse: {e}"));
        assert_eq!(again, reference, "{text:?} shows as {shown:?}");
        let _ = reference.api_authority();
        let _ = reference.target();
    }
    if let Ok(reference) = text.parse::<ManifestReference>() {
        assert_eq!(reference.to_string(), text);
    }
}

/// Digests: what parses prints back as the input.
pub fn digests(data: &[u8]) {
    let text = text(data);
    if let Ok(digest) = text.parse::<Digest>() {
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
    }
}

/// The `Content-Type` a manifest PUT may carry, picked by an input's
/// first byte.
const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some(""),
    Some("application/json"),
    Some(media_type::OCI_MANIFEST),
    Some(media_type::OCI_INDEX),
    Some(media_type::DOCKER_MANIFEST),
    Some(media_type::DOCKER_MANIFEST_LIST),
    Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
];

/// A manifest PUT: the first byte picks the `Content-Type`, the rest is
/// the body. What the server accepts, the shared model (which the prune
/// and the copy engine read stored manifests with) must read the same:
/// the same things named, the same subject. Otherwise a prune would not
/// keep what a stored manifest needs.
pub fn manifests(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(choice) % CONTENT_TYPES.len()];
    let checked = check_manifest(body, content_type);
    // What a client makes of the same bytes, whether or not the server
    // takes them.
    let model = Manifest::new(content_type.unwrap_or(""), body.to_vec().into());
    let _ = model.children();
    let Ok(checked) = checked else {
        return;
    };
    let stored = Manifest::new(&checked.media_type, body.to_vec().into());
    assert_eq!(stored.media_type, checked.media_type);
    let named: Vec<Digest> = match stored.children() {
        Ok(Children::Manifests(descriptors) | Children::Blobs(descriptors)) => {
            descriptors.into_iter().map(|d| d.digest).collect()
        }
        Err(e) => panic!("accepted as {} but unreadable: {e}", checked.media_type),
    };
    assert_eq!(named, checked.names, "what the manifest names");
    let subject = if stored.is_index() {
        stored.index().map(|i| i.subject)
    } else {
        stored.image().map(|i| i.subject)
    }
    .expect("read above")
    .map(|s| s.digest);
    assert_eq!(subject, checked.subject, "the subject");
}

/// `Range` (of a blob of the size the first 8 bytes give) and
/// `Content-Range` (of a chunk whose `Content-Length` is that number, or
/// none): the rest of the input is the header's text.
pub fn ranges(data: &[u8]) {
    let split = data.len().min(8);
    let mut number = [0u8; 8];
    number[..split].copy_from_slice(&data[..split]);
    let number = u64::from_le_bytes(number);
    let text = text(&data[split..]);
    if let Some((start, length)) = range::parse_range(&text, number) {
        assert!(length >= 1, "{text:?} of {number}: an empty range");
        let end = start.checked_add(length);
        assert!(
            end.is_some_and(|end| end <= number),
            "{text:?} of {number}: {start}+{length} runs past the blob"
        );
    }
    let _ = range::parse_content_range(&text);
    let _ = range::chunk_start(&text, None);
    if let Ok(start) = range::chunk_start(&text, Some(number)) {
        let (first, last) = range::parse_content_range(&text).expect("it was accepted");
        assert_eq!(first, start);
        assert_eq!(u128::from(last - first) + 1, u128::from(number));
    }
}

/// An htpasswd file: what is read holds one bcrypt entry per user.
pub fn htpasswd(data: &[u8]) {
    let text = text(data);
    match htpasswd::parse(Path::new("htpasswd"), &text) {
        Ok(entries) => {
            let mut names: Vec<&str> = entries.iter().map(|e| e.username.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), entries.len(), "a user listed twice");
            for entry in &entries {
                assert!(!entry.username.is_empty() && !entry.username.contains(':'));
                assert!(entry.password_bcrypt.starts_with("$2"), "not bcrypt");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// The secret the `tokens` entry signs with.
const SECRET: &[u8] = b"fuzz secret";

/// Bearer tokens, their claims, and the `scope`s of a token request.
pub fn tokens(data: &[u8]) {
    let text = text(data);
    let _ = token::verify(SECRET, &text);
    if let Ok(claims) = token::decode_claims(data) {
        // What the registry signs it reads back as signed.
        let signed = token::issue(SECRET, &claims);
        match token::verify(SECRET, &signed) {
            Ok(again) => assert_eq!(again, claims),
            Err(token::TokenError::Expired) => assert!(claims.exp <= token::now() + 1),
            Err(e) => panic!("our own token of {claims:?} is refused: {e}"),
        }
    }
    for scope in text.split(' ') {
        let Some(access) = parse_scope(scope) else {
            continue;
        };
        match access.kind.as_str() {
            "repository" => assert!(access.name.parse::<RepositoryName>().is_ok()),
            "registry" => assert_eq!(access.name, "catalog"),
            other => panic!("{scope:?} gave the resource type {other:?}"),
        }
        for action in &access.actions {
            assert!(
                matches!(action.as_str(), "pull" | "push" | "delete" | "*"),
                "{scope:?} gave the action {action:?}"
            );
        }
    }
}
