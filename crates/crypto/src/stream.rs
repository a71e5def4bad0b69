//! Chunked AEAD for large records (STREAM, Hoang–Reyhanitabar–Rogaway–Vizár 2015).
//! The byte format is documented at the crate root.

use std::fmt;
use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use crate::aead::{Aead, KeyMaterial, NONCE_LEN, TAG_LEN};
use crate::hash::KeyedHasher;
use crate::{CryptoError, DataKey, Result, Suite, random_array};

pub const MAGIC: [u8; 4] = *b"CTAE";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 35;
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
pub const MIN_CHUNK_SIZE: usize = 16;
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// Bytes each chunk adds: its u32 length prefix and its tag.
pub const CHUNK_OVERHEAD: usize = LEN_PREFIX + TAG_LEN;

const LEN_PREFIX: usize = 4;
const SALT_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
const SALT_AT: usize = 12;
const PREFIX_AT: usize = SALT_AT + SALT_LEN;
const KDF_LABEL: &[u8] = b"caretrail/stream/v1/key";

/// Parsed stream header.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamHeader {
    bytes: [u8; HEADER_LEN],
    suite: Suite,
    chunk_size: usize,
}

impl StreamHeader {
    fn generate(suite: Suite, chunk_size: usize) -> Result<Self> {
        check_chunk_size(chunk_size)?;
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4] = FORMAT_VERSION;
        bytes[5] = suite.id();
        // bytes[6..8]: reserved, zero.
        bytes[8..12].copy_from_slice(&u32::try_from(chunk_size).unwrap_or(u32::MAX).to_be_bytes());
        let random: [u8; SALT_LEN + PREFIX_LEN] = random_array()?;
        bytes[SALT_AT..].copy_from_slice(&random);
        Ok(Self {
            bytes,
            suite,
            chunk_size,
        })
    }

    /// Parse the first [`HEADER_LEN`] bytes of a stream (extra bytes are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let Some(bytes) = bytes.get(..HEADER_LEN) else {
            return Err(CryptoError::Truncated(format!(
                "stream header is {HEADER_LEN} bytes, got {}",
                bytes.len()
            )));
        };
        if bytes[..4] != MAGIC {
            return Err(CryptoError::Malformed(
                "not a caretrail encrypted stream (bad magic)".into(),
            ));
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedAlgorithm(format!(
                "stream format version {}",
                bytes[4]
            )));
        }
        let suite = Suite::from_id(bytes[5])?;
        if bytes[6..8] != [0, 0] {
            return Err(CryptoError::Malformed(
                "stream header: reserved bytes are not zero".into(),
            ));
        }
        let chunk_size = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        check_chunk_size(chunk_size).map_err(|_| {
            CryptoError::Malformed(format!(
                "stream header: chunk size {chunk_size} out of range"
            ))
        })?;
        let mut arr = [0u8; HEADER_LEN];
        arr.copy_from_slice(bytes);
        Ok(Self {
            bytes: arr,
            suite,
            chunk_size,
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    fn nonce_prefix(&self) -> [u8; PREFIX_LEN] {
        let mut p = [0u8; PREFIX_LEN];
        p.copy_from_slice(&self.bytes[PREFIX_AT..]);
        p
    }
}

impl fmt::Debug for StreamHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StreamHeader(v{}, {}, chunk {} B)",
            FORMAT_VERSION, self.suite, self.chunk_size
        )
    }
}

fn check_chunk_size(chunk_size: usize) -> Result<()> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(CryptoError::LimitExceeded(format!(
            "chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
        )))
    }
}

/// Per-stream cipher state: subkey, nonce prefix, counter.
struct ChunkCipher {
    aead: Aead,
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    counter: u32,
    chunk_size: usize,
    finished: bool,
}

impl ChunkCipher {
    fn new(key: &KeyMaterial, header: &StreamHeader, user_aad: &[u8]) -> Result<Self> {
        let suite = key.suite();
        if header.suite != suite {
            return Err(CryptoError::WrongSuite {
                expected: suite,
                found: header.suite,
            });
        }
        // Per-stream subkey: random salts make key reuse across streams safe beyond the
        // 56-bit nonce prefix alone. Deriving over the header prefix also binds the key to it.
        let mut kdf = KeyedHasher::with_raw_key(suite, key.as_slice());
        kdf.update(KDF_LABEL);
        kdf.update(&header.bytes[..PREFIX_AT]);
        let okm = kdf.finalize_secret();
        let subkey = KeyMaterial::from_slice(suite, &okm[..suite.aead_key_len()])?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&header.nonce_prefix());
        let mut aad = Vec::with_capacity(HEADER_LEN + user_aad.len());
        aad.extend_from_slice(&header.bytes);
        aad.extend_from_slice(user_aad);
        Ok(Self {
            aead: Aead::from_material(&subkey),
            nonce,
            aad,
            counter: 0,
            chunk_size: header.chunk_size,
            finished: false,
        })
    }

    fn nonce(&self, last: bool) -> [u8; NONCE_LEN] {
        let mut n = self.nonce;
        n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&self.counter.to_be_bytes());
        n[NONCE_LEN - 1] = u8::from(last);
        n
    }

    fn check_room(&self, last: bool) -> Result<()> {
        if self.finished {
            return Err(CryptoError::TrailingData);
        }
        // A non-final chunk needs a counter value left over for the final one.
        if !last && self.counter == u32::MAX {
            return Err(CryptoError::LimitExceeded("stream has 2^32 chunks".into()));
        }
        Ok(())
    }

    fn advance(&mut self, last: bool) {
        if last {
            self.finished = true;
        } else {
            self.counter = self.counter.wrapping_add(1);
        }
    }

    fn seal(&mut self, buf: &mut [u8], last: bool) -> Result<[u8; TAG_LEN]> {
        self.check_room(last)?;
        let tag = self
            .aead
            .encrypt_in_place_detached(&self.nonce(last), &self.aad, buf)?;
        self.advance(last);
        Ok(tag)
    }

    fn open(&mut self, buf: &mut [u8], tag: &[u8; TAG_LEN], last: bool) -> Result<()> {
        self.check_room(last)?;
        self.aead
            .decrypt_in_place_detached(&self.nonce(last), &self.aad, buf, tag)?;
        self.advance(last);
        Ok(())
    }

    /// Validate a chunk's length prefix; returns whether it is the final chunk.
    fn classify_len(&self, ct_len: usize) -> Result<bool> {
        if ct_len > self.chunk_size {
            return Err(CryptoError::Malformed(format!(
                "chunk of {ct_len} bytes in a stream of {}-byte chunks",
                self.chunk_size
            )));
        }
        Ok(ct_len < self.chunk_size)
    }
}

fn len_prefix(len: usize) -> [u8; LEN_PREFIX] {
    // Chunk sizes are capped at MAX_CHUNK_SIZE, far below u32::MAX.
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Push-style encryptor: no I/O, no runtime; usable from async code.
///
/// Write [`Self::header`] first, then everything [`Self::seal_chunk`] / [`Self::update`] and
/// finally [`Self::finish`] return, in order.
pub struct StreamEncryptor {
    header: StreamHeader,
    cipher: ChunkCipher,
    pending: Zeroizing<Vec<u8>>,
}

impl StreamEncryptor {
    /// New stream with [`DEFAULT_CHUNK_SIZE`] (64 KiB) chunks. `aad` is authenticated with
    /// every chunk and must be given again to decrypt.
    pub fn new(key: &DataKey, aad: &[u8]) -> Result<Self> {
        Self::with_chunk_size(key, aad, DEFAULT_CHUNK_SIZE)
    }

    pub fn with_chunk_size(key: &DataKey, aad: &[u8], chunk_size: usize) -> Result<Self> {
        let header = StreamHeader::generate(key.suite(), chunk_size)?;
        let cipher = ChunkCipher::new(key.material(), &header, aad)?;
        Ok(Self {
            header,
            cipher,
            pending: Zeroizing::new(Vec::new()),
        })
    }

    pub fn header(&self) -> &[u8] {
        &self.header.bytes
    }

    pub fn chunk_size(&self) -> usize {
        self.header.chunk_size
    }

    /// Seal one full, non-final chunk (exactly [`Self::chunk_size`] bytes).
    pub fn seal_chunk(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(chunk.len() + CHUNK_OVERHEAD);
        self.seal_chunk_into(chunk, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::seal_chunk`], appending to `out`.
    pub fn seal_chunk_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(CryptoError::Malformed(
                "seal_chunk called while update() has buffered data".into(),
            ));
        }
        if chunk.len() != self.chunk_size() {
            return Err(CryptoError::Malformed(format!(
                "non-final chunks must be exactly {} bytes, got {}; pass the rest to finish()",
                self.chunk_size(),
                chunk.len()
            )));
        }
        self.seal_into(chunk, false, out)
    }

    fn seal_into(&mut self, plaintext: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(plaintext.len() + CHUNK_OVERHEAD);
        out.extend_from_slice(&len_prefix(plaintext.len()));
        let start = out.len();
        out.extend_from_slice(plaintext);
        match self.cipher.seal(&mut out[start..], last) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                out.truncate(start - LEN_PREFIX);
                Err(e)
            }
        }
    }

    /// Buffered input of any size: seals every chunk that fills up, appending to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let cs = self.chunk_size();
        if !self.pending.is_empty() {
            let take = (cs - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < cs {
                return Ok(());
            }
            let pending = std::mem::take(&mut *self.pending);
            let pending = Zeroizing::new(pending);
            self.seal_into(&pending, false, out)?;
        }
        while data.len() >= cs {
            let (chunk, rest) = data.split_at(cs);
            self.seal_into(chunk, false, out)?;
            data = rest;
        }
        if !data.is_empty() {
            if self.pending.capacity() < cs {
                self.pending.reserve_exact(cs);
            }
            self.pending.extend_from_slice(data);
        }
        Ok(())
    }

    /// Seal `last` (any length, after anything buffered by [`Self::update`]) and the final chunk.
    pub fn finish(self, last: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(last.len() + 2 * CHUNK_OVERHEAD);
        self.finish_into(last, &mut out)?;
        Ok(out)
    }

    pub fn finish_into(mut self, last: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.update(last, out)?;
        let pending = std::mem::take(&mut *self.pending);
        let pending = Zeroizing::new(pending);
        self.seal_into(&pending, true, out)
    }
}

impl fmt::Debug for StreamEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StreamEncryptor({:?}, chunk #{})",
            self.header, self.cipher.counter
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Length,
    Body { ct_len: usize, last: bool },
    Done,
}

/// Push-style decryptor: feed it byte slices of any size; it emits plaintext only for chunks
/// whose tag has verified. After the last input, call [`Self::finish`]: only its `Ok` says
/// the stream was complete (not truncated) and had nothing appended.
///
/// After any error the decryptor stays failed and repeats that error.
pub struct StreamDecryptor {
    key: KeyMaterial,
    user_aad: Vec<u8>,
    header: Option<StreamHeader>,
    cipher: Option<ChunkCipher>,
    state: State,
    need: usize,
    buf: Zeroizing<Vec<u8>>,
    error: Option<CryptoError>,
}

impl StreamDecryptor {
    pub fn new(key: &DataKey, aad: &[u8]) -> Self {
        Self {
            key: key.material().clone(),
            user_aad: aad.to_vec(),
            header: None,
            cipher: None,
            state: State::Header,
            need: HEADER_LEN,
            buf: Zeroizing::new(Vec::with_capacity(HEADER_LEN)),
            error: None,
        }
    }

    /// Random access: decrypts from chunk `first_chunk` on. `header` is the stream's
    /// [`HEADER_LEN`]-byte header; the input starts at that chunk's length prefix (byte
    /// [`chunk_offset`]). Every chunk still authenticates against its own index, so chunks
    /// cannot be moved; [`Self::finish`] only succeeds once the final chunk was seen, so a
    /// caller that stops early must not call it.
    pub fn resume(key: &DataKey, aad: &[u8], header: &[u8], first_chunk: u32) -> Result<Self> {
        let header = StreamHeader::parse(header)?;
        let mut cipher = ChunkCipher::new(key.material(), &header, aad)?;
        cipher.counter = first_chunk;
        let buf = Zeroizing::new(Vec::with_capacity(header.chunk_size + TAG_LEN));
        Ok(Self {
            key: key.material().clone(),
            user_aad: aad.to_vec(),
            header: Some(header),
            cipher: Some(cipher),
            state: State::Length,
            need: LEN_PREFIX,
            buf,
            error: None,
        })
    }

    /// The header, once it has been received.
    pub fn header(&self) -> Option<&StreamHeader> {
        self.header.as_ref()
    }

    /// True once the final chunk has verified.
    pub fn is_done(&self) -> bool {
        self.state == State::Done && self.error.is_none()
    }

    /// Feed ciphertext; verified plaintext is appended to `out`. On error nothing unverified
    /// has been appended.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.run(input, Sink::Vec(out))
    }

    /// Feed ciphertext; `emit` is called with each verified plaintext chunk.
    pub fn update_with(
        &mut self,
        input: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.run(input, Sink::Fn(&mut emit))
    }

    /// End of input. Errors with [`CryptoError::Truncated`] unless the final chunk was seen.
    pub fn finish(self) -> Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::Done => Ok(()),
            State::Header => Err(CryptoError::Truncated(if self.buf.is_empty() {
                "empty input, no stream header".into()
            } else {
                "stream header cut short".into()
            })),
            State::Length if self.buf.is_empty() => Err(CryptoError::Truncated(
                "stream ended before its final chunk".into(),
            )),
            _ => Err(CryptoError::Truncated(
                "stream ended in the middle of a chunk".into(),
            )),
        }
    }

    fn run(&mut self, input: &[u8], mut sink: Sink<'_>) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.process(input, &mut sink);
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    fn process(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<()> {
        loop {
            if self.state == State::Done {
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(CryptoError::TrailingData)
                };
            }
            if input.is_empty() {
                return Ok(());
            }
            // Fast path: a whole chunk body is in `input` and the output is a Vec, so decrypt
            // straight into the output (one copy). Unverified bytes are removed on failure.
            if let (State::Body { ct_len, last }, true, Sink::Vec(out)) =
                (self.state, self.buf.is_empty(), &mut *sink)
                && input.len() >= self.need
            {
                let (body, rest) = input.split_at(self.need);
                let (ct, tag) = body.split_at(ct_len);
                let tag = to_tag(tag)?;
                let cipher = self.cipher_mut()?;
                let start = out.len();
                out.extend_from_slice(ct);
                if let Err(e) = cipher.open(&mut out[start..], &tag, last) {
                    out.truncate(start);
                    return Err(e);
                }
                input = rest;
                self.next_length(last);
                continue;
            }
            let take = (self.need - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.buf.len() < self.need {
                return Ok(());
            }
            match self.state {
                State::Header => {
                    let header = StreamHeader::parse(&self.buf)?;
                    let cipher = ChunkCipher::new(&self.key, &header, &self.user_aad)?;
                    // Room for a whole chunk, allocated once.
                    self.buf.clear();
                    self.buf.reserve_exact(header.chunk_size + TAG_LEN);
                    self.header = Some(header);
                    self.cipher = Some(cipher);
                    self.state = State::Length;
                    self.need = LEN_PREFIX;
                }
                State::Length => {
                    let ct_len =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    let last = self.cipher_mut()?.classify_len(ct_len)?;
                    self.buf.clear();
                    self.state = State::Body { ct_len, last };
                    self.need = ct_len + TAG_LEN;
                }
                State::Body { ct_len, last } => {
                    let tag = to_tag(&self.buf[ct_len..])?;
                    let cipher = self.cipher.as_mut().ok_or_else(internal)?;
                    cipher.open(&mut self.buf[..ct_len], &tag, last)?;
                    match sink {
                        Sink::Vec(out) => out.extend_from_slice(&self.buf[..ct_len]),
                        Sink::Fn(f) => f(&self.buf[..ct_len])?,
                    }
                    self.buf.clear();
                    self.next_length(last);
                }
                State::Done => {}
            }
        }
    }

    fn next_length(&mut self, last: bool) {
        if last {
            self.state = State::Done;
            self.need = 0;
        } else {
            self.state = State::Length;
            self.need = LEN_PREFIX;
        }
    }

    fn cipher_mut(&mut self) -> Result<&mut ChunkCipher> {
        self.cipher.as_mut().ok_or_else(internal)
    }
}

impl fmt::Debug for StreamDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecryptor")
            .field("header", &self.header)
            .field("state", &self.state)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

enum Sink<'a> {
    Vec(&'a mut Vec<u8>),
    Fn(&'a mut dyn FnMut(&[u8]) -> Result<()>),
}

fn internal() -> CryptoError {
    CryptoError::Malformed("stream decryptor used out of order".into())
}

fn to_tag(bytes: &[u8]) -> Result<[u8; TAG_LEN]> {
    bytes
        .try_into()
        .map_err(|_| CryptoError::Malformed("tag length".into()))
}

/// Sync encryptor implementing [`Write`]. Call [`Self::finish`]: a writer dropped without it
/// leaves a stream without its final chunk, which decrypts as [`CryptoError::Truncated`].
pub struct EncryptingWriter<W: Write> {
    inner: W,
    enc: StreamEncryptor,
    // [len prefix | plaintext ... | room for tag]; sealed in place, written with one call.
    buf: Zeroizing<Vec<u8>>,
}

impl<W: Write> EncryptingWriter<W> {
    /// Writes the header to `inner` at once.
    pub fn new(key: &DataKey, aad: &[u8], inner: W) -> Result<Self> {
        Self::with_chunk_size(key, aad, DEFAULT_CHUNK_SIZE, inner)
    }

    pub fn with_chunk_size(
        key: &DataKey,
        aad: &[u8],
        chunk_size: usize,
        mut inner: W,
    ) -> Result<Self> {
        let enc = StreamEncryptor::with_chunk_size(key, aad, chunk_size)?;
        inner.write_all(enc.header())?;
        let mut buf = Zeroizing::new(Vec::with_capacity(chunk_size + CHUNK_OVERHEAD));
        buf.extend_from_slice(&[0u8; LEN_PREFIX]);
        Ok(Self { inner, enc, buf })
    }

    fn flush_chunk(&mut self, last: bool) -> Result<()> {
        let pt_len = self.buf.len() - LEN_PREFIX;
        self.buf[..LEN_PREFIX].copy_from_slice(&len_prefix(pt_len));
        let tag = self.enc.cipher.seal(&mut self.buf[LEN_PREFIX..], last)?;
        self.buf.extend_from_slice(&tag);
        self.inner.write_all(&self.buf)?;
        self.buf.truncate(LEN_PREFIX);
        Ok(())
    }

    /// Write the final chunk, flush, and return the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.flush_chunk(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let cs = self.enc.chunk_size();
        let room = cs + LEN_PREFIX - self.buf.len();
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == cs + LEN_PREFIX {
            self.flush_chunk(false)?;
        }
        Ok(take)
    }

    /// Flushes the inner writer; a partial chunk stays buffered (chunks are fixed-size).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptingWriter({:?})", self.enc)
    }
}

/// Sync decryptor over a [`Read`]: [`Self::next_chunk`] yields verified plaintext chunks, and
/// it also implements [`Read`]. The end of the stream (`Ok(None)` / `Ok(0)`) is reported only
/// after the final chunk verified and nothing follows it; truncation is an error.
pub struct DecryptingReader<R: Read> {
    inner: R,
    key: KeyMaterial,
    user_aad: Vec<u8>,
    header: Option<StreamHeader>,
    cipher: Option<ChunkCipher>,
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    len: usize,
    done: bool,
    error: Option<CryptoError>,
}

impl<R: Read> DecryptingReader<R> {
    pub fn new(key: &DataKey, aad: &[u8], inner: R) -> Self {
        Self {
            inner,
            key: key.material().clone(),
            user_aad: aad.to_vec(),
            header: None,
            cipher: None,
            buf: Zeroizing::new(Vec::new()),
            pos: 0,
            len: 0,
            done: false,
            error: None,
        }
    }

    /// Reads and checks the header if that has not happened yet.
    pub fn header(&mut self) -> Result<&StreamHeader> {
        self.ensure_header()?;
        self.header.as_ref().ok_or_else(internal)
    }

    fn ensure_header(&mut self) -> Result<()> {
        if self.header.is_some() {
            return Ok(());
        }
        let mut raw = [0u8; HEADER_LEN];
        let n = read_full(&mut self.inner, &mut raw)?;
        if n < HEADER_LEN {
            return Err(CryptoError::Truncated(if n == 0 {
                "empty input, no stream header".into()
            } else {
                "stream header cut short".into()
            }));
        }
        let header = StreamHeader::parse(&raw)?;
        self.cipher = Some(ChunkCipher::new(&self.key, &header, &self.user_aad)?);
        self.buf = Zeroizing::new(Vec::with_capacity(header.chunk_size + TAG_LEN));
        self.header = Some(header);
        Ok(())
    }

    /// The next verified plaintext chunk, or `None` at the verified end of the stream.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.done {
            return Ok(None);
        }
        match self.read_chunk() {
            Ok(()) => {
                self.pos = self.len;
                Ok(Some(&self.buf[..self.len]))
            }
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn read_chunk(&mut self) -> Result<()> {
        self.ensure_header()?;
        let mut len = [0u8; LEN_PREFIX];
        match read_full(&mut self.inner, &mut len)? {
            0 => {
                return Err(CryptoError::Truncated(
                    "stream ended before its final chunk".into(),
                ));
            }
            LEN_PREFIX => {}
            _ => {
                return Err(CryptoError::Truncated(
                    "stream ended in the middle of a chunk".into(),
                ));
            }
        }
        let ct_len = u32::from_be_bytes(len) as usize;
        let cipher = self.cipher.as_mut().ok_or_else(internal)?;
        let last = cipher.classify_len(ct_len)?;
        self.buf.resize(ct_len + TAG_LEN, 0);
        if read_full(&mut self.inner, &mut self.buf)? < ct_len + TAG_LEN {
            return Err(CryptoError::Truncated(
                "stream ended in the middle of a chunk".into(),
            ));
        }
        let tag = to_tag(&self.buf[ct_len..])?;
        cipher.open(&mut self.buf[..ct_len], &tag, last)?;
        if last {
            // Release the final chunk only once we know nothing follows it.
            let mut probe = [0u8; 1];
            if read_full(&mut self.inner, &mut probe)? != 0 {
                return Err(CryptoError::TrailingData);
            }
            self.done = true;
        }
        self.len = ct_len;
        Ok(())
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.len {
            if self.done {
                return Ok(0);
            }
            // next_chunk sets pos = len; serve this chunk from the start.
            self.next_chunk()?;
            self.pos = 0;
        }
        let n = (self.len - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("header", &self.header)
            .field("done", &self.done)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encrypt everything `reader` yields into `writer` in constant memory. Returns plaintext bytes.
pub fn encrypt_stream(
    key: &DataKey,
    aad: &[u8],
    mut reader: impl Read,
    writer: impl Write,
) -> Result<u64> {
    let mut w = EncryptingWriter::new(key, aad, writer)?;
    let cs = w.enc.chunk_size();
    let mut total = 0u64;
    loop {
        // Read straight into the writer's chunk buffer.
        let start = w.buf.len();
        w.buf.resize(LEN_PREFIX + cs, 0);
        let n = read_full(&mut reader, &mut w.buf[start..])?;
        w.buf.truncate(start + n);
        total += n as u64;
        if w.buf.len() == LEN_PREFIX + cs {
            w.flush_chunk(false)?;
        } else {
            w.finish()?;
            return Ok(total);
        }
    }
}

/// Decrypt a stream from `reader` into `writer` in constant memory. Returns plaintext bytes.
/// On error, `writer` may already hold verified chunks: discard them (see
/// [`crate::tools::decrypt_file`], which only keeps the output on success).
pub fn decrypt_stream(
    key: &DataKey,
    aad: &[u8],
    reader: impl Read,
    mut writer: impl Write,
) -> Result<u64> {
    let mut r = DecryptingReader::new(key, aad, reader);
    let mut total = 0u64;
    while let Some(chunk) = r.next_chunk()? {
        writer.write_all(chunk)?;
        total += chunk.len() as u64;
    }
    writer.flush()?;
    Ok(total)
}

/// Whole-buffer convenience over [`StreamEncryptor`].
pub fn encrypt_to_vec(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let enc = StreamEncryptor::new(key, aad)?;
    let chunks = plaintext.len() / DEFAULT_CHUNK_SIZE + 1;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + chunks * CHUNK_OVERHEAD);
    out.extend_from_slice(enc.header());
    enc.finish_into(plaintext, &mut out)?;
    Ok(out)
}

/// Whole-buffer convenience over [`StreamDecryptor`].
pub fn decrypt_to_vec(key: &DataKey, aad: &[u8], stream: &[u8]) -> Result<Vec<u8>> {
    let mut dec = StreamDecryptor::new(key, aad);
    let mut out = Vec::with_capacity(stream.len());
    dec.update(stream, &mut out)?;
    dec.finish()?;
    Ok(out)
}

/// Byte offset of chunk `index` in a stream of `chunk_size`-byte chunks (every chunk but the
/// last is full, so positions are computable: random access for range reads).
pub fn chunk_offset(chunk_size: usize, index: u64) -> u64 {
    HEADER_LEN as u64 + index * (chunk_size + CHUNK_OVERHEAD) as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn counter_limit_is_enforced() {
        let key = DataKey::generate(Suite::Intl).unwrap();
        let mut enc = StreamEncryptor::with_chunk_size(&key, b"", MIN_CHUNK_SIZE).unwrap();
        enc.cipher.counter = u32::MAX;
        let err = enc.seal_chunk(&[0u8; MIN_CHUNK_SIZE]).unwrap_err();
        assert!(matches!(err, CryptoError::LimitExceeded(_)));
        // The final chunk still fits.
        assert!(enc.finish(b"x").is_ok());
    }

    #[test]
    fn nonce_layout_is_prefix_counter_flag() {
        let key = DataKey::generate(Suite::Gm).unwrap();
        let mut enc = StreamEncryptor::new(&key, b"").unwrap();
        enc.cipher.counter = 0x0102_0304;
        let n = enc.cipher.nonce(true);
        assert_eq!(&n[..7], &enc.header()[PREFIX_AT..]);
        assert_eq!(&n[7..11], &[1, 2, 3, 4]);
        assert_eq!(n[11], 1);
        assert_eq!(enc.cipher.nonce(false)[11], 0);
    }

    #[test]
    fn resumes_at_any_chunk_and_refuses_moved_chunks() {
        for suite in [Suite::Intl, Suite::Gm] {
            let key = DataKey::generate(suite).unwrap();
            let plain: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
            let mut enc = StreamEncryptor::with_chunk_size(&key, b"ctx", 64).unwrap();
            let mut sealed = enc.header().to_vec();
            enc.update(&plain, &mut sealed).unwrap();
            enc.finish_into(&[], &mut sealed).unwrap();
            let header = &sealed[..HEADER_LEN];
            for first in [0u64, 3, 15] {
                let at = chunk_offset(64, first) as usize;
                let mut dec = StreamDecryptor::resume(&key, b"ctx", header, first as u32).unwrap();
                let mut out = Vec::new();
                dec.update(&sealed[at..], &mut out).unwrap();
                dec.finish().unwrap();
                assert_eq!(out, &plain[first as usize * 64..]);
            }
            // The bytes of chunk 3 presented as chunk 4, or under other associated data, fail.
            let at = chunk_offset(64, 3) as usize;
            let mut dec = StreamDecryptor::resume(&key, b"ctx", header, 4).unwrap();
            assert!(dec.update(&sealed[at..], &mut Vec::new()).is_err());
            let mut dec = StreamDecryptor::resume(&key, b"other", header, 3).unwrap();
            assert!(dec.update(&sealed[at..], &mut Vec::new()).is_err());
            // Stopping before the final chunk is not a complete stream.
            let mut dec = StreamDecryptor::resume(&key, b"ctx", header, 3).unwrap();
            dec.update(&sealed[at..at + 200], &mut Vec::new()).unwrap();
            assert!(dec.finish().is_err());
        }
    }
}
