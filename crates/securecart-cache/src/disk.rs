//! The disk tier: stored responses kept in files under a directory, so that a restarted
//! edge starts warm, bounded in bytes, least recently used first out.
//!
//! One file per stored response (per variant of a key), as nginx's `proxy_cache` keeps
//! them, named by a SHA-256 of its key and variant. Written whole to a temporary name and
//! renamed, so a crash leaves either the old object or the new one; read whole when the
//! memory tier misses. An index of every file (its key, variant, size, host, path and tags,
//! without the body) is read from the files' headers when the tier opens; a file that does
//! not read back is deleted. The encodings made for clients are not written: they are made
//! again.
//!
//! Written by hand rather than with a hybrid cache crate such as `foyer`: that would
//! replace the memory tier (moka) as well and bring a large dependency tree for what is a
//! few hundred lines of file handling here.
//!
//! Every method does blocking file I/O: call them from a blocking thread
//! ([`crate::Cache`] does).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;

use crate::freshness::Freshness;
use crate::key::Variant;
use crate::store::Stored;

/// The first bytes of every object file, with the format's version (files of other
/// versions are removed when the tier opens: a cache starts colder, nothing else).
const MAGIC: &[u8; 4] = b"SCC2";

/// The bytes before a file's header: the magic, the header's length (4 bytes) and the
/// body's (8 bytes).
const PREAMBLE: usize = 16;
/// The suffix of object files.
const SUFFIX: &str = ".obj";

/// An object file as the index knows it.
#[derive(Debug)]
struct Entry {
    file: String,
    size: u64,
    variant: Variant,
    /// When its response was received: of two variants a request selects, the newer
    /// answers (RFC 9111 section 4.1), as in the memory tier.
    received: SystemTime,
    host: Box<str>,
    path: Box<str>,
    tags: Box<[Box<str>]>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<Arc<str>, Vec<Entry>>,
    used: u64,
    clock: u64,
}

/// Stored responses in files.
#[derive(Debug)]
pub struct Disk {
    directory: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
}

impl Disk {
    /// Opens the tier in `directory` (created if missing), holding about `capacity` bytes,
    /// and indexes the objects already there.
    pub fn open(directory: &Path, capacity: u64) -> io::Result<Self> {
        fs::create_dir_all(directory)?;
        let disk = Self {
            directory: directory.to_path_buf(),
            capacity,
            index: Mutex::default(),
        };
        for dirent in fs::read_dir(directory)? {
            let path = dirent?.path();
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if !name.ends_with(SUFFIX) {
                // A temporary file a crash left behind.
                if name.contains(".tmp") {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            match read_header(&path) {
                Ok((key, entry)) => disk.index_entry(Arc::from(key), entry),
                Err(_) => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        disk.evict();
        Ok(disk)
    }

    fn index_entry(&self, key: Arc<str>, mut entry: Entry) {
        let mut index = self.index.lock();
        index.clock += 1;
        entry.last_used = index.clock;
        index.used += entry.size;
        index.by_key.entry(key).or_default().push(entry);
    }

    /// The objects on disk and their bytes.
    pub fn usage(&self) -> (u64, u64) {
        let index = self.index.lock();
        let count = index.by_key.values().map(Vec::len).sum::<usize>();
        (count as u64, index.used)
    }

    /// Writes a stored response under `key`, in place of the one of its variant.
    pub fn write(&self, key: &str, stored: &Stored) -> io::Result<()> {
        let file = file_name(key, &stored.variant);
        let bytes = encode(key, stored);
        let temporary = self.directory.join(format!("{file}.tmp{}", rand_suffix()));
        {
            let mut out = fs::File::create(&temporary)?;
            out.write_all(&bytes)?;
        }
        fs::rename(&temporary, self.directory.join(&file))?;
        let entry = Entry {
            file,
            size: bytes.len() as u64,
            variant: stored.variant.clone(),
            received: stored.freshness.response_time,
            host: stored.host.clone(),
            path: stored.path.clone(),
            tags: stored.tags.clone(),
            last_used: 0,
        };
        {
            let mut index = self.index.lock();
            index.clock += 1;
            let clock = index.clock;
            let entries = index.by_key.entry(Arc::from(key)).or_default();
            let replaced = entries
                .iter()
                .position(|old| old.file == entry.file)
                .map(|old| entries.swap_remove(old).size)
                .unwrap_or(0);
            entries.push(Entry {
                last_used: clock,
                ..entry
            });
            index.used = index.used - replaced + bytes.len() as u64;
        }
        self.evict();
        Ok(())
    }

    /// The stored response under `key` whose variant `request` selects, read from its file.
    pub fn read(&self, key: &str, request: &HeaderMap) -> io::Result<Option<Stored>> {
        let file = {
            let mut index = self.index.lock();
            index.clock += 1;
            let clock = index.clock;
            let Some(entry) = index.by_key.get_mut(key).and_then(|entries| {
                entries
                    .iter_mut()
                    .filter(|entry| entry.variant.matches(request))
                    .max_by_key(|entry| entry.received)
            }) else {
                return Ok(None);
            };
            entry.last_used = clock;
            entry.file.clone()
        };
        let mut bytes = Vec::new();
        match fs::File::open(self.directory.join(&file)) {
            Ok(mut handle) => handle.read_to_end(&mut bytes)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.forget(key, &file);
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        match decode(Bytes::from(bytes)) {
            Some((stored_key, stored)) if stored_key == key => Ok(Some(stored)),
            _ => {
                self.forget(key, &file);
                let _ = fs::remove_file(self.directory.join(&file));
                Ok(None)
            }
        }
    }

    /// Whether an object under `key` answers `request`, without reading it (no I/O).
    pub fn has(&self, key: &str, request: &HeaderMap) -> bool {
        self.index
            .lock()
            .by_key
            .get(key)
            .is_some_and(|entries| entries.iter().any(|entry| entry.variant.matches(request)))
    }

    /// Forgets every object under `key` at once (later reads miss) and returns their files,
    /// to [`Disk::delete`].
    pub fn unindex(&self, key: &str) -> Vec<PathBuf> {
        let mut index = self.index.lock();
        let removed = index.by_key.remove(key).unwrap_or_default();
        index.used -= removed.iter().map(|entry| entry.size).sum::<u64>();
        removed
            .iter()
            .map(|entry| self.directory.join(&entry.file))
            .collect()
    }

    /// Forgets every object whose host, path and tags `matches` accepts, and returns the
    /// keys that had one and their files.
    pub fn unindex_where(
        &self,
        matches: impl Fn(&str, &str, &[Box<str>]) -> bool,
    ) -> (Vec<Arc<str>>, Vec<PathBuf>) {
        let keys: Vec<Arc<str>> = {
            let index = self.index.lock();
            index
                .by_key
                .iter()
                .filter(|(_, entries)| {
                    entries
                        .iter()
                        .any(|entry| matches(&entry.host, &entry.path, &entry.tags))
                })
                .map(|(key, _)| Arc::clone(key))
                .collect()
        };
        let files = keys.iter().flat_map(|key| self.unindex(key)).collect();
        (keys, files)
    }

    /// Deletes files [`Disk::unindex`] returned.
    pub fn delete(files: &[PathBuf]) {
        for file in files {
            let _ = fs::remove_file(file);
        }
    }

    fn forget(&self, key: &str, file: &str) {
        let mut index = self.index.lock();
        let mut freed = 0;
        if let Some(entries) = index.by_key.get_mut(key) {
            if let Some(position) = entries.iter().position(|entry| entry.file == file) {
                freed = entries.swap_remove(position).size;
            }
            if entries.is_empty() {
                index.by_key.remove(key);
            }
        }
        index.used -= freed;
    }

    /// Past the capacity, removes the least recently used objects down to 90% of it.
    fn evict(&self) {
        let doomed: Vec<String> = {
            let mut index = self.index.lock();
            if index.used <= self.capacity {
                return;
            }
            let mut by_age: Vec<(u64, Arc<str>, String, u64)> = index
                .by_key
                .iter()
                .flat_map(|(key, entries)| {
                    entries.iter().map(|entry| {
                        (
                            entry.last_used,
                            Arc::clone(key),
                            entry.file.clone(),
                            entry.size,
                        )
                    })
                })
                .collect();
            by_age.sort_unstable_by_key(|(last_used, ..)| *last_used);
            let target = self.capacity / 10 * 9;
            let mut doomed = Vec::new();
            for (_, key, file, size) in by_age {
                if index.used <= target {
                    break;
                }
                if let Some(entries) = index.by_key.get_mut(&key) {
                    entries.retain(|entry| entry.file != file);
                    if entries.is_empty() {
                        index.by_key.remove(&key);
                    }
                }
                index.used -= size;
                doomed.push(file);
            }
            doomed
        };
        for file in doomed {
            let _ = fs::remove_file(self.directory.join(file));
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) << 32 | NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The file of a key's variant: the SHA-256 of both, in hex.
fn file_name(key: &str, variant: &Variant) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(key.as_bytes());
    let mut writer = Writer::default();
    write_variant(&mut writer, variant);
    context.update(&writer.0);
    let digest = context.finish();
    let mut name: String = digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    name.push_str(SUFFIX);
    name
}

/// Big-endian fields, each length-prefixed where it varies.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn bytes(&mut self, value: &[u8]) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.0
            .extend_from_slice(&value[..value.len().min(u32::MAX as usize)]);
    }
    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.bytes(value.as_bytes());
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        if self.0.len() < length {
            return None;
        }
        let (taken, rest) = self.0.split_at(length);
        self.0 = rest;
        Some(taken)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn optional(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.string().map(Some),
            _ => None,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn write_variant(writer: &mut Writer, variant: &Variant) {
    let headers: Vec<_> = variant.headers().collect();
    writer.u32(headers.len() as u32);
    for (name, value) in headers {
        writer.bytes(name.as_str().as_bytes());
        writer.optional(value);
    }
    let cookies: Vec<_> = variant.cookies().collect();
    writer.u32(cookies.len() as u32);
    for (name, value) in cookies {
        writer.bytes(name.as_bytes());
        writer.optional(value);
    }
}

fn read_variant(reader: &mut Reader<'_>) -> Option<Variant> {
    let count = reader.u32()?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(reader.bytes()?).ok()?;
        headers.push((name, reader.optional()?));
    }
    let count = reader.u32()?;
    let mut cookies = Vec::new();
    for _ in 0..count {
        cookies.push((reader.string()?, reader.optional()?));
    }
    Some(Variant::from_parts(headers, cookies))
}

/// A stored response as file bytes: the magic, the header's length and the body's, the
/// header (key, status, freshness, variant, host, path, tags, headers), then the body. The
/// body's length tells a file cut short (written, renamed, and then lost in part to a
/// crash of the machine before its data reached the disk) from a whole one.
fn encode(key: &str, stored: &Stored) -> Vec<u8> {
    let mut header = Writer::default();
    header.bytes(key.as_bytes());
    header.u16(stored.status.as_u16());
    let freshness = &stored.freshness;
    header.u64(millis(freshness.lifetime));
    header.u64(millis(freshness.initial_age));
    header.u64(millis(
        freshness
            .response_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    ));
    header.u64(millis(freshness.stale_while_revalidate));
    header.u64(millis(freshness.stale_if_error));
    header.u8(u8::from(freshness.no_cache)
        | u8::from(freshness.never_stale) << 1
        | u8::from(freshness.has_validator) << 2);
    write_variant(&mut header, &stored.variant);
    header.bytes(stored.host.as_bytes());
    header.bytes(stored.path.as_bytes());
    header.u32(stored.tags.len() as u32);
    for tag in &stored.tags {
        header.bytes(tag.as_bytes());
    }
    header.u32(stored.headers.len() as u32);
    for (name, value) in &stored.headers {
        header.bytes(name.as_str().as_bytes());
        header.bytes(value.as_bytes());
    }
    let mut bytes = Vec::with_capacity(PREAMBLE + header.0.len() + stored.body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.0.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&(stored.body.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&header.0);
    bytes.extend_from_slice(&stored.body);
    bytes
}

/// The header of a file: its key and the parts of it that are not the body.
struct Header {
    key: String,
    stored: Stored,
}

fn decode_header(bytes: &[u8]) -> Option<Header> {
    let mut reader = Reader(bytes);
    let key = reader.string()?;
    let status = StatusCode::from_u16(reader.u16()?).ok()?;
    let duration = |millis: u64| Duration::from_millis(millis);
    let lifetime = duration(reader.u64()?);
    let initial_age = duration(reader.u64()?);
    let response_time = SystemTime::UNIX_EPOCH.checked_add(duration(reader.u64()?))?;
    let stale_while_revalidate = duration(reader.u64()?);
    let stale_if_error = duration(reader.u64()?);
    let flags = reader.u8()?;
    let variant = read_variant(&mut reader)?;
    let host = reader.string()?;
    let path = reader.string()?;
    let mut tags = Vec::new();
    for _ in 0..reader.u32()? {
        tags.push(Box::from(reader.string()?));
    }
    let mut headers = HeaderMap::new();
    for _ in 0..reader.u32()? {
        let name = HeaderName::from_bytes(reader.bytes()?).ok()?;
        let value = HeaderValue::from_bytes(reader.bytes()?).ok()?;
        headers.append(name, value);
    }
    if !reader.0.is_empty() {
        return None;
    }
    Some(Header {
        key,
        stored: Stored {
            status,
            headers,
            body: Bytes::new(),
            freshness: Freshness {
                lifetime,
                initial_age,
                response_time,
                no_cache: flags & 1 != 0,
                never_stale: flags & 2 != 0,
                stale_while_revalidate,
                stale_if_error,
                has_validator: flags & 4 != 0,
            },
            variant,
            host: host.into(),
            path: path.into(),
            tags: tags.into(),
            encoded: Box::new([]),
        },
    })
}

/// A whole file: its key and stored response.
fn decode(bytes: Bytes) -> Option<(String, Stored)> {
    let mut reader = Reader(&bytes);
    if reader.take(4)? != MAGIC {
        return None;
    }
    let length = reader.u32()? as usize;
    let body_length = reader.u64()?;
    let header = decode_header(reader.take(length)?)?;
    // A file cut short, or with more after its body, is not an object.
    if reader.0.len() as u64 != body_length {
        return None;
    }
    let mut stored = header.stored;
    stored.body = bytes.slice(PREAMBLE + length..);
    Some((header.key, stored))
}

/// Reads only a file's header, for the index.
fn read_header(path: &Path) -> io::Result<(String, Entry)> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "not a cache object");
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut start = [0u8; PREAMBLE];
    file.read_exact(&mut start)?;
    if &start[..4] != MAGIC {
        return Err(invalid());
    }
    let length = u32::from_be_bytes([start[4], start[5], start[6], start[7]]) as usize;
    let mut body_length = [0u8; 8];
    body_length.copy_from_slice(&start[8..]);
    let body_length = u64::from_be_bytes(body_length);
    // A file cut short (or longer than it says) is not an object.
    if (PREAMBLE as u64)
        .checked_add(length as u64)
        .and_then(|sum| sum.checked_add(body_length))
        != Some(size)
    {
        return Err(invalid());
    }
    let mut bytes = vec![0; length];
    file.read_exact(&mut bytes)?;
    let header = decode_header(&bytes).ok_or_else(invalid)?;
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(invalid)?
        .to_owned();
    if name != file_name(&header.key, &header.stored.variant) {
        return Err(invalid());
    }
    Ok((
        header.key,
        Entry {
            file: name,
            size,
            received: header.stored.freshness.response_time,
            variant: header.stored.variant,
            host: header.stored.host,
            path: header.stored.path,
            tags: header.stored.tags,
            last_used: 0,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::KeyPolicy;

    pub(crate) fn stored(path: &str, body: &str, language: &str) -> Stored {
        let mut request = HeaderMap::new();
        request.insert(
            "accept-language",
            HeaderValue::from_str(language).expect("value"),
        );
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("vary", HeaderValue::from_static("Accept-Language"));
        headers.append(
            "x-raw",
            HeaderValue::from_bytes(b"caf\xe9").expect("opaque bytes"),
        );
        Stored {
            status: StatusCode::OK,
            variant: Variant::capture(
                &request,
                &[HeaderName::from_static("accept-language")],
                &KeyPolicy::default(),
            ),
            headers,
            body: Bytes::copy_from_slice(body.as_bytes()),
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::from_secs(3),
                response_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                no_cache: false,
                never_stale: true,
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::ZERO,
                has_validator: true,
            },
            host: "shop.test".into(),
            path: path.into(),
            tags: vec![Box::from("product-1")].into(),
            encoded: Box::new([]),
        }
    }

    pub(crate) fn asking(language: &str) -> HeaderMap {
        let mut request = HeaderMap::new();
        request.insert(
            "accept-language",
            HeaderValue::from_str(language).expect("value"),
        );
        request
    }

    #[test]
    fn objects_survive_a_reopen_with_their_variants() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let disk = Disk::open(directory.path(), 1 << 20).expect("opens");
        disk.write("shop.test/a", &stored("/a", "english", "en"))
            .expect("writes");
        disk.write("shop.test/a", &stored("/a", "french", "fr"))
            .expect("writes");
        disk.write("shop.test/a", &stored("/a", "english again", "en"))
            .expect("rewrites");
        assert_eq!(disk.usage().0, 2);
        drop(disk);

        let disk = Disk::open(directory.path(), 1 << 20).expect("reopens");
        assert_eq!(disk.usage().0, 2);
        let english = disk
            .read("shop.test/a", &asking("en"))
            .expect("reads")
            .expect("found");
        assert_eq!(english.body, "english again");
        let original = stored("/a", "english again", "en");
        assert_eq!(english.headers, original.headers);
        assert_eq!(english.freshness, original.freshness);
        assert_eq!(english.tags, original.tags);
        assert!(english.variant.same_as(&original.variant));
        assert_eq!(
            disk.read("shop.test/a", &asking("fr"))
                .expect("reads")
                .map(|stored| stored.body),
            Some(Bytes::from_static(b"french"))
        );
        assert!(
            disk.read("shop.test/a", &asking("de"))
                .expect("reads")
                .is_none()
        );
        assert!(
            disk.read("shop.test/b", &asking("en"))
                .expect("reads")
                .is_none()
        );

        let files = disk.unindex("shop.test/a");
        assert_eq!(files.len(), 2);
        assert!(!disk.has("shop.test/a", &asking("en")));
        Disk::delete(&files);
        assert_eq!(
            Disk::open(directory.path(), 1 << 20)
                .expect("reopens")
                .usage(),
            (0, 0)
        );
    }

    /// Of two variants a request selects (one stored without `Vary`, one with), the
    /// newer answers, before a reopen and after it, whatever the files' order.
    #[test]
    fn the_newest_variant_a_request_selects_answers() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let disk = Disk::open(directory.path(), 1 << 20).expect("opens");
        let older = stored("/a", "older", "en");
        let mut newer = stored("/a", "newer, without Vary", "en");
        newer.variant = Variant::capture(&asking("en"), &[], &KeyPolicy::default());
        newer.freshness.response_time += Duration::from_secs(10);
        for (first, second) in [(&older, &newer), (&newer, &older)] {
            disk.write("shop.test/a", first).expect("writes");
            disk.write("shop.test/a", second).expect("writes");
            let read = |disk: &Disk| {
                disk.read("shop.test/a", &asking("en"))
                    .expect("reads")
                    .map(|stored| stored.body)
            };
            assert_eq!(
                read(&disk),
                Some(Bytes::from_static(b"newer, without Vary"))
            );
            let reopened = Disk::open(directory.path(), 1 << 20).expect("reopens");
            assert_eq!(
                read(&reopened),
                Some(Bytes::from_static(b"newer, without Vary"))
            );
        }
    }

    #[test]
    fn damaged_files_are_dropped_and_the_least_recently_used_go_first() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let disk = Disk::open(directory.path(), 1 << 20).expect("opens");
        disk.write("shop.test/a", &stored("/a", "a", "en"))
            .expect("writes");
        let file = fs::read_dir(directory.path())
            .expect("lists")
            .next()
            .expect("a file")
            .expect("entry")
            .path();
        fs::write(&file, b"SCC2\0\0\0\x09\0\0\0\0\0\0\0\0garbage").expect("damages");
        fs::write(directory.path().join("left.obj.tmp7"), b"half").expect("writes");
        let disk = Disk::open(directory.path(), 1 << 20).expect("reopens");
        assert_eq!(disk.usage(), (0, 0));
        assert_eq!(fs::read_dir(directory.path()).expect("lists").count(), 0);

        // A file cut short (a machine's crash after the rename, before its data reached
        // the disk) is no object: not when the tier opens, nor when it is read.
        let cut = |disk: &Disk| {
            disk.write("shop.test/cut", &stored("/cut", "a whole body", "en"))
                .expect("writes");
            let file = fs::read_dir(directory.path())
                .expect("lists")
                .next()
                .expect("a file")
                .expect("entry")
                .path();
            let bytes = fs::read(&file).expect("reads");
            fs::write(&file, &bytes[..bytes.len() - 4]).expect("cuts");
        };
        cut(&disk);
        assert_eq!(
            disk.read("shop.test/cut", &asking("en"))
                .expect("reads")
                .map(|stored| stored.body),
            None
        );
        assert!(!disk.has("shop.test/cut", &asking("en")));
        cut(&disk);
        let disk = Disk::open(directory.path(), 1 << 20).expect("reopens");
        assert_eq!(disk.usage(), (0, 0));

        let body = "x".repeat(1000);
        let size = encode("shop.test/p0", &stored("/p0", &body, "en")).len() as u64;
        let disk = Disk::open(directory.path(), size * 3).expect("opens");
        for index in 0..3 {
            let key = format!("shop.test/p{index}");
            disk.write(&key, &stored(&format!("/p{index}"), &body, "en"))
                .expect("writes");
        }
        // Reading p0 makes p1 the least recently used.
        assert!(
            disk.read("shop.test/p0", &asking("en"))
                .expect("reads")
                .is_some()
        );
        disk.write("shop.test/p3", &stored("/p3", &body, "en"))
            .expect("writes");
        assert!(disk.usage().1 <= size * 3);
        assert!(!disk.has("shop.test/p1", &asking("en")));
        assert!(disk.has("shop.test/p0", &asking("en")));
        assert!(disk.has("shop.test/p3", &asking("en")));
        let (keys, files) =
            disk.unindex_where(|_, _, tags| tags.iter().any(|tag| &**tag == "product-1"));
        assert_eq!(keys.len(), files.len());
        assert_eq!(disk.usage(), (0, 0));
    }
}
