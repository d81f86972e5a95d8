//! A minimal pickle reader for PyTorch checkpoints that never executes anything.
//!
//! Python's `pickle` calls whatever a file names; this reader only *describes* calls. A `GLOBAL`
//! yields a symbolic [`Value::Global`]; `REDUCE`/`NEWOBJ` build a value only for a short whitelist
//! (an `OrderedDict`, torch's tensor and parameter rebuild functions, `_codecs.encode` for bytes) and
//! keep every other call as [`Value::Opaque`], so an optimizer state or an `argparse.Namespace` beside
//! the weights never fails a load. Persistent ids `('storage', torch.FloatStorage, key, location,
//! numel)` become [`Value::Storage`]. Unknown opcodes are an error naming the opcode and its offset.
//!
//! Objects live in an arena while unpickling, so the memo shares them the way Python does (a dict
//! memoised before its items are set sees the items); the result is converted to a tree at `STOP`.

use std::collections::HashMap;
use std::fmt;

/// Most nested containers the result may have (deeper, or a reference cycle, is an error).
const MAX_DEPTH: usize = 200;
/// Highest pickle protocol understood.
const MAX_PROTOCOL: u8 = 5;

/// A decoded pickle value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A larger integer: little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A bytes object.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict or `OrderedDict`, entries in insertion order (a later equal key replaces an earlier one).
    Dict(Vec<(Value, Value)>),
    /// A set or frozenset.
    Set(Vec<Value>),
    /// A reference to `module.name`, never resolved.
    Global {
        /// Module path, e.g. `torch._utils`.
        module: String,
        /// Attribute, e.g. `_rebuild_tensor_v2`.
        name: String,
    },
    /// A torch storage named by a persistent id.
    Storage(StorageRef),
    /// A torch tensor: a view into a storage.
    Tensor(TensorRef),
    /// Anything else (the result of a call that is not whitelisted), described for error messages.
    Opaque(String),
}

impl Value {
    /// The entries if this is a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string if this is a text string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short description for error messages: the type, not the contents.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::Global { module, name } => format!("reference to {module}.{name}"),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Opaque(what) => what.clone(),
        }
    }
}

/// Element type of a torch storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    /// `torch.DoubleStorage`.
    F64,
    /// `torch.FloatStorage`.
    F32,
    /// `torch.HalfStorage`.
    F16,
    /// `torch.BFloat16Storage`.
    BF16,
    /// `torch.LongStorage`.
    I64,
    /// `torch.IntStorage`.
    I32,
    /// `torch.ShortStorage`.
    I16,
    /// `torch.CharStorage`.
    I8,
    /// `torch.ByteStorage` or `torch.UntypedStorage`.
    U8,
    /// `torch.BoolStorage`.
    Bool,
    /// Any other storage class, by name (complex, quantized, float8 ...).
    Other(String),
}

impl StorageDtype {
    fn from_class(module: &str, name: &str) -> Option<StorageDtype> {
        if !matches!(module, "torch" | "torch.cuda" | "torch.storage") || !name.ends_with("Storage")
        {
            return None;
        }
        Some(match name {
            "DoubleStorage" => StorageDtype::F64,
            "FloatStorage" => StorageDtype::F32,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "LongStorage" => StorageDtype::I64,
            "IntStorage" => StorageDtype::I32,
            "ShortStorage" => StorageDtype::I16,
            "CharStorage" => StorageDtype::I8,
            "ByteStorage" | "UntypedStorage" => StorageDtype::U8,
            "BoolStorage" => StorageDtype::Bool,
            other => StorageDtype::Other(other.to_string()),
        })
    }

    /// Bytes per element, if known.
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            StorageDtype::F64 | StorageDtype::I64 => 8,
            StorageDtype::F32 | StorageDtype::I32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 | StorageDtype::I16 => 2,
            StorageDtype::I8 | StorageDtype::U8 | StorageDtype::Bool => 1,
            StorageDtype::Other(_) => return None,
        })
    }
}

impl fmt::Display for StorageDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageDtype::F64 => "float64",
            StorageDtype::F32 => "float32",
            StorageDtype::F16 => "float16",
            StorageDtype::BF16 => "bfloat16",
            StorageDtype::I64 => "int64",
            StorageDtype::I32 => "int32",
            StorageDtype::I16 => "int16",
            StorageDtype::I8 => "int8",
            StorageDtype::U8 => "uint8",
            StorageDtype::Bool => "bool",
            StorageDtype::Other(name) => name,
        })
    }
}

/// A storage as a torch zip names it: `<archive>/data/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRef {
    /// Record name inside the archive's `data/` folder.
    pub key: String,
    /// Element type.
    pub dtype: StorageDtype,
    /// Elements in the storage.
    pub numel: u64,
    /// Where it lived when saved (`cpu`, `cuda:0`); informational.
    pub location: String,
}

/// A tensor: `size`/`stride` (in elements) into a storage from `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// First element's index in the storage.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Stride of each dimension, in elements.
    pub stride: Vec<u64>,
}

/// Why a pickle could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickleError {
    /// An opcode this reader does not implement.
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its offset in the stream.
        offset: usize,
    },
    /// The stream ends inside an opcode or before `STOP`.
    Truncated {
        /// Offset where more bytes were needed.
        offset: usize,
    },
    /// An opcode's operands are not what it needs (empty stack, no mark, bad memo key, bad text ...).
    Malformed {
        /// The opcode's name.
        opcode: &'static str,
        /// Its offset.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Protocol newer than 5.
    UnsupportedProtocol(u8),
    /// The result nests deeper than this reader follows, or refers to itself.
    TooDeep,
    /// The result shares sub-objects so heavily that expanding it would exhaust memory.
    TooLarge,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleError::UnknownOpcode { opcode, offset } => write!(
                f,
                "unsupported pickle opcode 0x{opcode:02x} ({:?}) at offset {offset}",
                *opcode as char
            ),
            PickleError::Truncated { offset } => {
                write!(f, "pickle truncated at offset {offset}")
            }
            PickleError::Malformed {
                opcode,
                offset,
                reason,
            } => write!(f, "malformed pickle: {opcode} at offset {offset}: {reason}"),
            PickleError::UnsupportedProtocol(p) => {
                write!(f, "pickle protocol {p} is newer than this reader (5)")
            }
            PickleError::TooDeep => f.write_str("pickle nests too deeply or is self-referential"),
            PickleError::TooLarge => f.write_str("pickle expands to too many objects"),
        }
    }
}

impl std::error::Error for PickleError {}

/// Decodes a pickle stream up to its `STOP`. Bytes after `STOP` are ignored, as Python does.
pub fn unpickle(bytes: &[u8]) -> Result<Value, PickleError> {
    let mut m = Machine {
        bytes,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    // Every node is visited, and every string copied, at most this much in total; sharing beyond
    // it is a "pickle bomb". torch shares little (a storage's class and location), so a state
    // dict's tree is a small multiple of its arena and its strings of its bytes.
    let mut budget = Budget {
        nodes: m.arena.len().saturating_mul(8).max(1 << 16),
        bytes: bytes.len().saturating_mul(8).max(1 << 20),
    };
    m.to_value(root, 0, &mut budget)
}

/// What the tree built from the arena may still take: a node shared by many containers is copied
/// into each, so neither count is bounded by the input without these.
struct Budget {
    /// Nodes.
    nodes: usize,
    /// Bytes of strings, byte strings and big integers.
    bytes: usize,
}

impl Budget {
    fn take(&mut self, payload: usize) -> Result<(), PickleError> {
        self.nodes = self.nodes.checked_sub(1).ok_or(PickleError::TooLarge)?;
        self.bytes = self
            .bytes
            .checked_sub(payload)
            .ok_or(PickleError::TooLarge)?;
        Ok(())
    }
}

type Id = usize;

/// An arena node: containers refer to their children by id.
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    Opaque(String),
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        _ => "?",
    }
}

impl Machine<'_> {
    fn bad(&self, op: u8, at: usize, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            opcode: opcode_name(op),
            offset: at,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length operand, checked against the bytes left so a huge length fails as truncation.
    fn len(&mut self, width: usize) -> Result<usize, PickleError> {
        let at = self.pos;
        let n = match width {
            1 => self.u8()? as u64,
            4 => self.u32()? as u64,
            _ => self.u64()?,
        };
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.pos)
            .ok_or(PickleError::Truncated { offset: at })
    }

    fn line(&mut self, op: u8, at: usize) -> Result<String, PickleError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let text = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.bad(op, at, "operand is not text"))?
            .to_string();
        self.pos += n + 1;
        Ok(text)
    }

    fn text(&mut self, op: u8, at: usize, n: usize) -> Result<String, PickleError> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(self.bad(op, at, "string is not UTF-8")),
        }
    }

    fn alloc(&mut self, obj: Obj) -> Id {
        self.arena.push(obj);
        self.arena.len() - 1
    }

    fn push(&mut self, obj: Obj) {
        let id = self.alloc(obj);
        self.stack.push(id);
    }

    fn pop(&mut self, op: u8, at: usize) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.bad(op, at, "stack underflow"));
        }
        Ok(self.stack.pop().unwrap_or_default())
    }

    fn top(&self, op: u8, at: usize) -> Result<Id, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.bad(op, at, "stack is empty"))
    }

    fn pop_mark(&mut self, op: u8, at: usize) -> Result<Vec<Id>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.bad(op, at, "no MARK"))?;
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, op: u8, at: usize, key: u64) -> Result<Id, PickleError> {
        self.memo
            .get(&key)
            .copied()
            .ok_or_else(|| self.bad(op, at, format!("memo key {key} was never stored")))
    }

    fn memo_put(&mut self, op: u8, at: usize, key: u64) -> Result<(), PickleError> {
        let id = self.top(op, at)?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn int_from_le(bytes: &[u8]) -> Obj {
        if bytes.is_empty() {
            return Obj::Int(0);
        }
        if bytes.len() <= 8 {
            let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
                0xff
            } else {
                0
            };
            let mut b = [fill; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            Obj::Int(i64::from_le_bytes(b))
        } else {
            Obj::BigInt(bytes.to_vec())
        }
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > MAX_PROTOCOL {
                        return Err(PickleError::UnsupportedProtocol(p));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => {
                    let id = self.pop(op, at)?;
                    return Ok(id);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop(op, at)?;
                    }
                }
                b'1' => {
                    self.pop_mark(op, at)?;
                }
                b'2' => {
                    let id = self.top(op, at)?;
                    self.stack.push(id);
                }
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = self.len(if op == 0x8a { 1 } else { 4 })?;
                    let b = self.take(n)?.to_vec();
                    self.push(Self::int_from_le(&b));
                }
                b'I' => {
                    let line = self.line(op, at)?;
                    let obj = match line.as_str() {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        s => Obj::Int(s.parse().map_err(|_| self.bad(op, at, "bad integer"))?),
                    };
                    self.push(obj);
                }
                b'L' => {
                    let line = self.line(op, at)?;
                    let v: i64 = line
                        .trim_end_matches('L')
                        .parse()
                        .map_err(|_| self.bad(op, at, "integer too large or malformed"))?;
                    self.push(Obj::Int(v));
                }
                b'F' => {
                    let line = self.line(op, at)?;
                    let v: f64 = line
                        .trim()
                        .parse()
                        .map_err(|_| self.bad(op, at, "bad float"))?;
                    self.push(Obj::Float(v));
                }
                b'G' => {
                    let v = f64::from_bits(u64::from_be_bytes(
                        self.take(8)?.try_into().unwrap_or([0; 8]),
                    ));
                    self.push(Obj::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = self.len(match op {
                        0x8c => 1,
                        b'X' => 4,
                        _ => 8,
                    })?;
                    let s = self.text(op, at, n)?;
                    self.push(Obj::Str(s));
                }
                b'V' => {
                    // raw-unicode-escape; the names torch writes are plain ASCII.
                    let s = self.line(op, at)?;
                    self.push(Obj::Str(s));
                }
                b'S' => {
                    let s = self.line(op, at)?;
                    let s = s.trim();
                    let unquoted = s
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| self.bad(op, at, "string is not quoted"))?;
                    let obj = Obj::Str(unquoted.to_string());
                    self.push(obj);
                }
                b'T' | b'U' => {
                    // Python 2 `str`: bytes, which Python 3 decodes as ASCII by default.
                    let n = self.len(if op == b'U' { 1 } else { 4 })?;
                    let b = self.take(n)?.to_vec();
                    let obj = match String::from_utf8(b) {
                        Ok(s) => Obj::Str(s),
                        Err(e) => Obj::Bytes(e.into_bytes()),
                    };
                    self.push(obj);
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = self.len(match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    })?;
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b));
                }
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'}' => self.push(Obj::Dict(Vec::new())),
                0x8f => self.push(Obj::Set(Vec::new())),
                b'l' => {
                    let items = self.pop_mark(op, at)?;
                    self.push(Obj::List(items));
                }
                b't' => {
                    let items = self.pop_mark(op, at)?;
                    self.push(Obj::Tuple(items));
                }
                0x91 => {
                    let items = self.pop_mark(op, at)?;
                    self.push(Obj::Set(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(op, at)?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark(op, at)?;
                    if items.len() % 2 != 0 {
                        return Err(self.bad(op, at, "odd number of items"));
                    }
                    let pairs = items.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                    self.push(Obj::Dict(pairs));
                }
                b'a' => {
                    let item = self.pop(op, at)?;
                    let list = self.top(op, at)?;
                    self.extend(op, at, list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark(op, at)?;
                    let list = self.top(op, at)?;
                    self.extend(op, at, list, items)?;
                }
                0x90 => {
                    let items = self.pop_mark(op, at)?;
                    let set = self.top(op, at)?;
                    match &mut self.arena[set] {
                        Obj::Set(v) => v.extend(items),
                        Obj::Opaque(_) => {}
                        _ => return Err(self.bad(op, at, "target is not a set")),
                    }
                }
                b's' => {
                    let value = self.pop(op, at)?;
                    let key = self.pop(op, at)?;
                    let dict = self.top(op, at)?;
                    self.set_items(op, at, dict, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark(op, at)?;
                    if items.len() % 2 != 0 {
                        return Err(self.bad(op, at, "odd number of items"));
                    }
                    let dict = self.top(op, at)?;
                    self.set_items(op, at, dict, items)?;
                }
                b'p' => {
                    let line = self.line(op, at)?;
                    let key = line.parse().map_err(|_| self.bad(op, at, "bad memo key"))?;
                    self.memo_put(op, at, key)?;
                }
                b'q' => {
                    let key = self.u8()? as u64;
                    self.memo_put(op, at, key)?;
                }
                b'r' => {
                    let key = self.u32()? as u64;
                    self.memo_put(op, at, key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(op, at, key)?;
                }
                b'g' => {
                    let line = self.line(op, at)?;
                    let key = line.parse().map_err(|_| self.bad(op, at, "bad memo key"))?;
                    let id = self.memo_get(op, at, key)?;
                    self.stack.push(id);
                }
                b'h' => {
                    let key = self.u8()? as u64;
                    let id = self.memo_get(op, at, key)?;
                    self.stack.push(id);
                }
                b'j' => {
                    let key = self.u32()? as u64;
                    let id = self.memo_get(op, at, key)?;
                    self.stack.push(id);
                }
                b'c' => {
                    let module = self.line(op, at)?;
                    let name = self.line(op, at)?;
                    self.push(Obj::Global(module, name));
                }
                0x93 => {
                    let name = self.pop(op, at)?;
                    let module = self.pop(op, at)?;
                    let (Obj::Str(module), Obj::Str(name)) =
                        (&self.arena[module], &self.arena[name])
                    else {
                        return Err(self.bad(op, at, "module and name must be strings"));
                    };
                    let obj = Obj::Global(module.clone(), name.clone());
                    self.push(obj);
                }
                b'R' => {
                    let args = self.pop(op, at)?;
                    let callable = self.pop(op, at)?;
                    let obj = self.call(op, at, callable, args, 0)?;
                    self.push(obj);
                }
                0x81 => {
                    let _args = self.pop(op, at)?;
                    let cls = self.pop(op, at)?;
                    let obj = Obj::Opaque(self.instance_of(cls));
                    self.push(obj);
                }
                0x92 => {
                    let _kwargs = self.pop(op, at)?;
                    let _args = self.pop(op, at)?;
                    let cls = self.pop(op, at)?;
                    let obj = Obj::Opaque(self.instance_of(cls));
                    self.push(obj);
                }
                b'i' => {
                    let module = self.line(op, at)?;
                    let name = self.line(op, at)?;
                    self.pop_mark(op, at)?;
                    self.push(Obj::Opaque(format!("{module}.{name} object")));
                }
                b'o' => {
                    let items = self.pop_mark(op, at)?;
                    let what = match items.first() {
                        Some(&cls) => self.instance_of(cls),
                        None => return Err(self.bad(op, at, "no class")),
                    };
                    self.push(Obj::Opaque(what));
                }
                b'b' => {
                    // Setting an object's state: attributes we never look at (an OrderedDict's
                    // `_metadata`, a Namespace's fields). The object itself stays on the stack.
                    self.pop(op, at)?;
                    self.top(op, at)?;
                }
                b'Q' => {
                    let pid = self.pop(op, at)?;
                    let obj = self.persistent_load(pid);
                    self.push(obj);
                }
                b'P' => {
                    let pid = self.line(op, at)?;
                    self.push(Obj::Opaque(format!("persistent object {pid:?}")));
                }
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        opcode: op,
                        offset: at,
                    });
                }
            }
        }
    }

    fn extend(&mut self, op: u8, at: usize, list: Id, items: Vec<Id>) -> Result<(), PickleError> {
        match &mut self.arena[list] {
            Obj::List(v) => v.extend(items),
            // Appending to something opaque (a custom list subclass) is harmless.
            Obj::Opaque(_) => {}
            _ => return Err(self.bad(op, at, "target is not a list")),
        }
        Ok(())
    }

    fn set_items(
        &mut self,
        op: u8,
        at: usize,
        dict: Id,
        items: Vec<Id>,
    ) -> Result<(), PickleError> {
        match &mut self.arena[dict] {
            Obj::Dict(v) => v.extend(items.chunks_exact(2).map(|c| (c[0], c[1]))),
            Obj::Opaque(_) => {}
            _ => return Err(self.bad(op, at, "target is not a dict")),
        }
        Ok(())
    }

    fn instance_of(&self, cls: Id) -> String {
        match &self.arena[cls] {
            Obj::Global(m, n) => format!("{m}.{n} object"),
            _ => "object".to_string(),
        }
    }

    fn global(&self, id: Id) -> Option<(&str, &str)> {
        match &self.arena[id] {
            Obj::Global(m, n) => Some((m.as_str(), n.as_str())),
            _ => None,
        }
    }

    fn tuple_items(&self, id: Id) -> Option<&[Id]> {
        match &self.arena[id] {
            Obj::Tuple(v) | Obj::List(v) => Some(v),
            _ => None,
        }
    }

    fn int(&self, id: Id) -> Option<i64> {
        match self.arena[id] {
            Obj::Int(v) => Some(v),
            _ => None,
        }
    }

    fn ints(&self, id: Id) -> Option<Vec<u64>> {
        self.tuple_items(id)?
            .iter()
            .map(|&i| self.int(i).and_then(|v| u64::try_from(v).ok()))
            .collect()
    }

    /// `callable(*args)` for the whitelisted callables; an opaque description for the rest.
    fn call(
        &mut self,
        op: u8,
        at: usize,
        callable: Id,
        args: Id,
        nesting: u8,
    ) -> Result<Obj, PickleError> {
        let Some((module, name)) = self.global(callable) else {
            return Ok(Obj::Opaque("result of a call".into()));
        };
        let (module, name) = (module.to_string(), name.to_string());
        let args: Vec<Id> = match self.tuple_items(args) {
            Some(a) => a.to_vec(),
            None => return Err(self.bad(op, at, "arguments are not a tuple")),
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                let mut pairs = Vec::new();
                if let Some(&items) = args.first() {
                    for &pair in self.tuple_items(items).unwrap_or(&[]) {
                        if let Some(&[k, v]) = self.tuple_items(pair) {
                            pairs.push((k, v));
                        }
                    }
                }
                Ok(Obj::Dict(pairs))
            }
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                // (storage, storage_offset, size, stride, requires_grad?, backward_hooks?, metadata?)
                let parsed = (|| {
                    let storage = match &self.arena[*args.first()?] {
                        Obj::Storage(s) => s.clone(),
                        _ => return None,
                    };
                    let offset = u64::try_from(self.int(*args.get(1)?)?).ok()?;
                    let size = self.ints(*args.get(2)?)?;
                    let stride = self.ints(*args.get(3)?)?;
                    (size.len() == stride.len()).then_some(TensorRef {
                        storage,
                        offset,
                        size,
                        stride,
                    })
                })();
                match parsed {
                    Some(t) => Ok(Obj::Tensor(t)),
                    None => Ok(Obj::Opaque(format!(
                        "{module}.{name} call with unexpected arguments"
                    ))),
                }
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                // A Parameter is its data; requires_grad and hooks do not matter here.
                Ok(match args.first() {
                    Some(&data) => self.copy_of(data),
                    None => Obj::Opaque(format!("{module}.{name} call without data")),
                })
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                // (func, new_type, args, state): a tensor subclass; rebuild the plain tensor.
                match (args.first(), args.get(2)) {
                    // A subclass of a subclass nests once more; a list that holds itself would not end.
                    (Some(&func), Some(&inner)) if nesting < 8 => {
                        self.call(op, at, func, inner, nesting + 1)
                    }
                    _ => Ok(Obj::Opaque(format!("{module}.{name} call"))),
                }
            }
            ("_codecs", "encode") => {
                // Protocol 2 writes bytes as _codecs.encode(str, 'latin1').
                let text = args.first().and_then(|&a| match &self.arena[a] {
                    Obj::Str(s) => Some(s.clone()),
                    _ => None,
                });
                Ok(match text {
                    Some(s) if s.chars().all(|c| (c as u32) < 256) => {
                        Obj::Bytes(s.chars().map(|c| c as u8).collect())
                    }
                    _ => Obj::Opaque("encoded bytes".into()),
                })
            }
            _ => Ok(Obj::Opaque(format!("{module}.{name}(...)"))),
        }
    }

    /// A shallow copy of a leaf-ish node (tensors, storages); containers stay shared by id.
    fn copy_of(&self, id: Id) -> Obj {
        match &self.arena[id] {
            Obj::Tensor(t) => Obj::Tensor(t.clone()),
            Obj::Storage(s) => Obj::Storage(s.clone()),
            _ => Obj::Opaque("parameter of an unexpected kind".into()),
        }
    }

    fn persistent_load(&self, pid: Id) -> Obj {
        let parsed = (|| {
            let items = self.tuple_items(pid)?;
            let tag = match &self.arena[*items.first()?] {
                Obj::Str(s) => s.as_str(),
                _ => return None,
            };
            if tag != "storage" || items.len() < 5 {
                return None;
            }
            let (module, name) = self.global(items[1])?;
            let dtype = StorageDtype::from_class(module, name)?;
            let key = match &self.arena[items[2]] {
                Obj::Str(s) => s.clone(),
                Obj::Int(i) => i.to_string(),
                _ => return None,
            };
            let location = match &self.arena[items[3]] {
                Obj::Str(s) => s.clone(),
                _ => String::new(),
            };
            let numel = u64::try_from(self.int(items[4])?).ok()?;
            Some(StorageRef {
                key,
                dtype,
                numel,
                location,
            })
        })();
        match parsed {
            Some(s) => Obj::Storage(s),
            None => Obj::Opaque("persistent object that is not a torch storage".into()),
        }
    }

    fn to_value(&self, id: Id, depth: usize, budget: &mut Budget) -> Result<Value, PickleError> {
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep);
        }
        budget.take(match &self.arena[id] {
            Obj::BigInt(b) | Obj::Bytes(b) => b.len(),
            Obj::Str(s) | Obj::Opaque(s) => s.len(),
            Obj::Global(m, n) => m.len() + n.len(),
            Obj::Storage(s) => s.key.len() + s.location.len(),
            Obj::Tensor(t) => t.storage.key.len() + t.storage.location.len() + 16 * t.size.len(),
            _ => 0,
        })?;
        let list = |items: &[Id], budget: &mut Budget| -> Result<Vec<Value>, PickleError> {
            items
                .iter()
                .map(|&i| self.to_value(i, depth + 1, budget))
                .collect()
        };
        Ok(match &self.arena[id] {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::BigInt(b) => Value::BigInt(b.clone()),
            Obj::Float(f) => Value::Float(*f),
            Obj::Str(s) => Value::Str(s.clone()),
            Obj::Bytes(b) => Value::Bytes(b.clone()),
            Obj::List(v) => Value::List(list(v, budget)?),
            Obj::Tuple(v) => Value::Tuple(list(v, budget)?),
            Obj::Set(v) => Value::Set(list(v, budget)?),
            Obj::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    out.push((
                        self.to_value(k, depth + 1, budget)?,
                        self.to_value(v, depth + 1, budget)?,
                    ));
                }
                Value::Dict(out)
            }
            Obj::Global(m, n) => Value::Global {
                module: m.clone(),
                name: n.clone(),
            },
            Obj::Storage(s) => Value::Storage(s.clone()),
            Obj::Tensor(t) => Value::Tensor(t.clone()),
            Obj::Opaque(s) => Value::Opaque(s.clone()),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds pickle bytes the way `torch.save` (protocol 2) does.
    #[derive(Default)]
    pub(crate) struct Writer {
        pub out: Vec<u8>,
        memo: u32,
    }

    impl Writer {
        pub fn new() -> Writer {
            let mut w = Writer::default();
            w.out.extend_from_slice(&[0x80, 2]);
            w
        }
        pub fn op(&mut self, op: u8) -> &mut Self {
            self.out.push(op);
            self
        }
        pub fn put(&mut self) -> &mut Self {
            let k = self.memo;
            self.memo += 1;
            if k < 256 {
                self.out.extend_from_slice(&[b'q', k as u8]);
            } else {
                self.out.push(b'r');
                self.out.extend_from_slice(&k.to_le_bytes());
            }
            self
        }
        pub fn str(&mut self, s: &str) -> &mut Self {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.out.extend_from_slice(s.as_bytes());
            self.put()
        }
        pub fn int(&mut self, v: i64) -> &mut Self {
            if (0..256).contains(&v) {
                self.out.extend_from_slice(&[b'K', v as u8]);
            } else if (0..65536).contains(&v) {
                self.out.push(b'M');
                self.out.extend_from_slice(&(v as u16).to_le_bytes());
            } else if i32::try_from(v).is_ok() {
                self.out.push(b'J');
                self.out.extend_from_slice(&(v as i32).to_le_bytes());
            } else {
                self.out.extend_from_slice(&[0x8a, 8]);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
        pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.out.push(b'c');
            self.out.extend_from_slice(module.as_bytes());
            self.out.push(b'\n');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'\n');
            self.put()
        }
        pub fn int_tuple(&mut self, v: &[u64]) -> &mut Self {
            match v.len() {
                0 => {
                    self.op(b')');
                }
                1..=3 => {
                    for &x in v {
                        self.int(x as i64);
                    }
                    self.op(0x84 + v.len() as u8);
                }
                _ => {
                    self.op(b'(');
                    for &x in v {
                        self.int(x as i64);
                    }
                    self.op(b't');
                }
            }
            self.put()
        }
        /// `torch._utils._rebuild_tensor_v2(storage(key), offset, size, stride, False, OrderedDict())`
        /// with the storage persisted as torch does.
        pub fn tensor(
            &mut self,
            storage_class: &str,
            key: &str,
            numel: u64,
            offset: u64,
            size: &[u64],
            stride: &[u64],
        ) -> &mut Self {
            self.global("torch._utils", "_rebuild_tensor_v2");
            self.op(b'(');
            self.op(b'(');
            self.str("storage");
            self.global("torch", storage_class);
            self.str(key);
            self.str("cpu");
            self.int(numel as i64);
            self.op(b't').put();
            self.op(b'Q');
            self.int(offset as i64);
            self.int_tuple(size);
            self.int_tuple(stride);
            self.op(0x89);
            self.global("collections", "OrderedDict");
            self.op(b')').op(b'R').put();
            self.op(b't').put();
            self.op(b'R').put()
        }
        pub fn finish(&mut self) -> Vec<u8> {
            self.out.push(b'.');
            std::mem::take(&mut self.out)
        }
    }

    #[test]
    fn torch_state_dict_with_shared_storage_and_metadata() {
        let mut w = Writer::new();
        w.global("collections", "OrderedDict");
        w.op(b')').op(b'R').put();
        w.op(b'(');
        w.str("module.a");
        w.tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]);
        w.str("b");
        w.tensor("HalfStorage", "1", 4, 1, &[3], &[1]);
        w.op(b'u');
        // OrderedDict's `_metadata` attribute arrives through BUILD.
        w.op(b'}').put();
        w.str("_metadata").op(b'}').put().op(b's');
        w.op(b'b');
        let v = unpickle(&w.finish()).unwrap();
        let entries = v.as_dict().unwrap();
        assert_eq!(entries.len(), 2);
        let Value::Tensor(a) = v.get("module.a").unwrap() else {
            panic!("{v:?}")
        };
        assert_eq!(a.size, vec![2, 3]);
        assert_eq!(a.stride, vec![3, 1]);
        assert_eq!(a.storage.dtype, StorageDtype::F32);
        assert_eq!(a.storage.numel, 6);
        let Value::Tensor(b) = v.get("b").unwrap() else {
            panic!()
        };
        assert_eq!((b.offset, b.storage.dtype.clone()), (1, StorageDtype::F16));
    }

    #[test]
    fn memo_shares_a_dict_filled_after_it_was_memoised() {
        // {'x': d, 'y': d} where d = {} is memoised, then filled, then fetched again.
        let mut w = Writer::new();
        w.op(b'}').put(); // outer: memo 0
        w.str("x"); // memo 1
        w.op(b'}').put(); // d: memo 2
        w.str("k").int(7).op(b's');
        w.op(b's');
        w.str("y");
        w.out.extend_from_slice(&[b'h', 2]);
        w.op(b's');
        let v = unpickle(&w.finish()).unwrap();
        let inner = Value::Dict(vec![(Value::Str("k".into()), Value::Int(7))]);
        assert_eq!(v.get("x"), Some(&inner));
        assert_eq!(v.get("y"), Some(&inner));
    }

    #[test]
    fn protocol_4_opcodes() {
        // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_LIST/APPENDS, BINFLOAT, LONG1, NEWOBJ.
        let mut b = vec![0x80, 4, 0x95];
        b.extend_from_slice(&0u64.to_le_bytes());
        b.push(b'}');
        b.push(0x94);
        b.extend_from_slice(&[0x8c, 1, b'l', 0x94, b']', 0x94, b'(']);
        b.push(b'G');
        b.extend_from_slice(&1.5f64.to_be_bytes());
        b.extend_from_slice(&[0x8a, 2, 0x00, 0x80]); // -32768
        b.extend_from_slice(&[0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1]); // 2^64
        b.extend_from_slice(&[0x88, 0x89, b'N', b'e', b's']);
        b.extend_from_slice(&[0x8c, 2, b'n', b's', 0x94]);
        b.extend_from_slice(&[0x8c, 8]);
        b.extend_from_slice(b"argparse");
        b.extend_from_slice(&[0x8c, 9]);
        b.extend_from_slice(b"Namespace");
        b.extend_from_slice(&[0x93, b')', 0x81, b'}', b'b', b's', b'.']);
        let v = unpickle(&b).unwrap();
        assert_eq!(
            v.get("l"),
            Some(&Value::List(vec![
                Value::Float(1.5),
                Value::Int(-32768),
                Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
                Value::Bool(true),
                Value::Bool(false),
                Value::None,
            ]))
        );
        assert_eq!(
            v.get("ns"),
            Some(&Value::Opaque("argparse.Namespace object".into()))
        );
    }

    #[test]
    fn non_whitelisted_calls_stay_opaque_and_never_run() {
        let mut w = Writer::new();
        w.op(b'}').put();
        w.str("evil");
        w.global("os", "system")
            .str("rm -rf /")
            .op(0x85)
            .op(b'R')
            .put();
        w.op(b's');
        let v = unpickle(&w.finish()).unwrap();
        assert_eq!(v.get("evil"), Some(&Value::Opaque("os.system(...)".into())));
    }

    #[test]
    fn parameters_and_tensor_subclasses_unwrap_to_tensors() {
        let mut w = Writer::new();
        w.global("torch._utils", "_rebuild_parameter");
        w.op(b'(');
        w.tensor("BFloat16Storage", "3", 2, 0, &[2], &[1]);
        w.op(0x88);
        w.global("collections", "OrderedDict").op(b')').op(b'R');
        w.op(b't').op(b'R');
        let v = unpickle(&w.finish()).unwrap();
        let Value::Tensor(t) = v else { panic!("{v:?}") };
        assert_eq!(t.storage.dtype, StorageDtype::BF16);
        assert_eq!(t.storage.key, "3");
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            unpickle(&[0x80, 2, 0xff]),
            Err(PickleError::UnknownOpcode {
                opcode: 0xff,
                offset: 2
            })
        );
        assert_eq!(
            unpickle(&[0x80, 2, b'X', 9, 0, 0, 0, b'a']),
            Err(PickleError::Truncated { offset: 3 })
        );
        assert_eq!(
            unpickle(&[0x80, 2, b'N']),
            Err(PickleError::Truncated { offset: 3 })
        );
        assert_eq!(
            unpickle(&[0x80, 9]),
            Err(PickleError::UnsupportedProtocol(9))
        );
        assert!(matches!(
            unpickle(&[0x80, 2, b'h', 5, b'.']),
            Err(PickleError::Malformed {
                opcode: "BINGET",
                ..
            })
        ));
        assert!(matches!(
            unpickle(&[0x80, 2, b's', b'.']),
            Err(PickleError::Malformed {
                opcode: "SETITEM",
                ..
            })
        ));
        assert!(matches!(
            unpickle(&[0x80, 2, b'K', 1, b'u', b'.']),
            Err(PickleError::Malformed {
                opcode: "SETITEMS",
                ..
            })
        ));
        // A list that contains itself.
        assert_eq!(
            unpickle(&[0x80, 2, b']', b'q', 0, b'h', 0, b'a', b'.']),
            Err(PickleError::TooDeep)
        );
    }

    #[test]
    fn mutated_pickles_never_panic() {
        let mut w = Writer::new();
        w.global("collections", "OrderedDict");
        w.op(b')').op(b'R').put();
        w.op(b'(');
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            w.str(key);
            w.tensor("FloatStorage", &i.to_string(), 6, 0, &[2, 3], &[3, 1]);
        }
        w.op(b'u');
        let valid = w.finish();
        assert!(unpickle(&valid).is_ok());
        // xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut b = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % b.len() as u64) as usize;
                match next() % 3 {
                    0 => b[i] = next() as u8,
                    1 => b.truncate(i),
                    _ => b.insert(i, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = unpickle(&b);
        }
    }

    #[test]
    fn shared_subobjects_cannot_explode() {
        // l0 = []; l1 = [l0, l0]; l2 = [l1, l1]; ... 2^40 leaves if expanded.
        let mut b = vec![0x80, 2, b']', b'q', 0];
        for i in 1..=40u8 {
            b.extend_from_slice(&[b'(', b'h', i - 1, b'h', i - 1, b'l', b'q', i]);
        }
        b.push(b'.');
        assert_eq!(unpickle(&b), Err(PickleError::TooLarge));
    }

    /// One 3000-byte string shared 10^6 times through three levels of 100-entry lists is 3 GB once
    /// every copy is made; shared 400 times, 1.2 MB in 400 nodes, it is still refused: the string
    /// bytes are counted, not only the nodes.
    #[test]
    fn shared_strings_cannot_explode() {
        let bomb = |levels: u8, width: usize| {
            let mut b = vec![0x80, 2, b'B'];
            b.extend_from_slice(&3000u32.to_le_bytes());
            b.extend_from_slice(&[b'x'; 3000]);
            b.extend_from_slice(&[b'q', 0]);
            for level in 1..=levels {
                b.push(b'(');
                for _ in 0..width {
                    b.extend_from_slice(&[b'h', level - 1]);
                }
                b.extend_from_slice(&[b'l', b'q', level]);
            }
            b.push(b'.');
            assert!(b.len() < 4000);
            b
        };
        assert_eq!(unpickle(&bomb(3, 100)), Err(PickleError::TooLarge));
        assert_eq!(unpickle(&bomb(1, 400)), Err(PickleError::TooLarge));
        // A string shared a few times, as torch shares "cpu" between tensors, is fine.
        let mut b = vec![0x80, 2, b'(', b'B'];
        b.extend_from_slice(&3000u32.to_le_bytes());
        b.extend_from_slice(&[b'x'; 3000]);
        b.extend_from_slice(&[b'q', 0]);
        for _ in 0..100 {
            b.extend_from_slice(&[b'h', 0]);
        }
        b.extend_from_slice(b"l.");
        assert!(matches!(unpickle(&b), Ok(Value::List(v)) if v.len() == 101));
    }
}
