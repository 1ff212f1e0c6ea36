//! Files: `.conv` models, `.npy` tensors, `.safetensors` parameters.
//!
//! Every reader checks sizes before allocating (a corrupt header cannot make it allocate more than
//! the file could hold), and every writer writes a temporary file beside the target and renames it
//! into place, so a failure never leaves a partial output.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use conv_dsl::dim::fmt_shape;
use conv_dsl::spec::MAX_ELEMENTS;
use npyz::WriterBuilder;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{Error, Network, Params, Tensor};

/// Reads and checks a model file.
pub fn load_model(path: &Path) -> Result<Network, Error> {
    let text = read_model_text(path)?;
    Ok(conv_dsl::compile_source(&path.display().to_string(), &text)?)
}

/// Reads a model file's text: at most the front end's size limit, and UTF-8.
pub fn read_model_text(path: &Path) -> Result<String, Error> {
    let bytes = read_limited(path, conv_dsl::syntax::MAX_SOURCE_BYTES as u64, "a model file")?;
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        Error::file(path, format!("not UTF-8 text (invalid byte at offset {offset}); a model is DSL text"))
    })
}

/// Reads a whole file of at most `limit` bytes.
fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(|error| Error::file(path, format!("cannot open: {error}")))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|error| Error::file(path, format!("cannot read: {error}")))?;
    if bytes.len() as u64 > limit {
        return Err(Error::file(path, format!("{what} is at most {limit} bytes; this file is larger")));
    }
    Ok(bytes)
}

/// Reads an f32 `.npy` array in C order.
pub fn read_npy(path: &Path) -> Result<Tensor, Error> {
    let file = File::open(path).map_err(|error| Error::file(path, format!("cannot open: {error}")))?;
    let file_len = file.metadata().map(|metadata| metadata.len()).unwrap_or(u64::MAX);
    let mut reader = BufReader::new(file);
    check_npy_header_length(path, &mut reader, file_len)?;
    let npy =
        npyz::NpyFile::new(reader).map_err(|error| Error::file(path, format!("not a valid .npy file: {error}")))?;
    let dtype = match npy.dtype() {
        npyz::DType::Plain(type_str) => type_str.to_string(),
        _ => "a structured dtype".to_string(),
    };
    if dtype != "<f4" && dtype != ">f4" {
        return Err(Error::file(
            path,
            format!("has dtype {dtype}; convgen reads float32 arrays (`<f4`): use `x.astype(numpy.float32)`"),
        ));
    }
    if npy.order() != npyz::Order::C {
        return Err(Error::file(path, "is in Fortran order; save it in C order (`numpy.ascontiguousarray`)"));
    }
    let shape = npy.shape().to_vec();
    let elements =
        shape.iter().try_fold(1u128, |product, &dim| product.checked_mul(u128::from(dim))).unwrap_or(u128::MAX);
    if elements > u128::from(MAX_ELEMENTS) || elements * 4 > u128::from(file_len) {
        return Err(Error::file(
            path,
            format!(
                "its header claims shape {} ({elements} elements), more than the file holds or the limit of 2^31 elements",
                fmt_shape(&shape)
            ),
        ));
    }
    let data: Vec<f32> =
        npy.into_vec().map_err(|error| Error::file(path, format!("cannot read the array data: {error}")))?;
    let shape: Vec<usize> = shape.iter().map(|&dim| dim as usize).collect();
    Tensor::new(shape, data).map_err(|error| Error::file(path, error.to_string()))
}

/// Rejects a header whose declared length is more than the file holds, before `npyz` allocates a
/// buffer of that length (a corrupt 4 GiB length would otherwise be allocated up front).
fn check_npy_header_length(path: &Path, reader: &mut BufReader<File>, file_len: u64) -> Result<(), Error> {
    use std::io::BufRead;
    let prefix = reader.fill_buf().map_err(|error| Error::file(path, format!("cannot read: {error}")))?;
    if prefix.len() < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Err(Error::file(path, "not a valid .npy file: it does not start with the .npy magic bytes"));
    }
    // Version 1 has a 2-byte header length after the version; versions 2 and 3 a 4-byte one.
    let (header_len, preamble) = match prefix[6] {
        1 => (u64::from(u16::from_le_bytes([prefix[8], prefix[9]])), 10),
        _ if prefix.len() >= 12 => (u64::from(u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]])), 12),
        _ => return Err(Error::file(path, "not a valid .npy file: its header is cut short")),
    };
    if preamble + header_len > file_len {
        return Err(Error::file(
            path,
            format!("not a valid .npy file: its header claims {header_len} bytes, but the file has only {file_len}"),
        ));
    }
    Ok(())
}

/// Writes an f32 `.npy` array in C order, atomically.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), Error> {
    let shape: Vec<u64> = tensor.shape_u64();
    write_atomically(path, |file| {
        let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(file).begin_nd()?;
        writer.extend(tensor.data().iter().copied())?;
        writer.finish()
    })
}

/// Reads parameters from a `.safetensors` file (f32 tensors only).
pub fn read_safetensors(path: &Path) -> Result<Params, Error> {
    let bytes = read_limited(path, 64 << 30, "a parameter file")?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|error| Error::file(path, format!("not a valid .safetensors file: {error}")))?;
    let mut params = Params::new();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in tensors {
        if view.dtype() != Dtype::F32 {
            return Err(Error::file(
                path,
                format!(
                    "parameter `{name}` has dtype {:?}; convgen reads F32 tensors (`tensor.float()` in PyTorch)",
                    view.dtype()
                ),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect();
        let tensor = Tensor::new(view.shape().to_vec(), data)
            .map_err(|error| Error::file(path, format!("parameter `{name}`: {error}")))?;
        params.insert(name, tensor);
    }
    Ok(params)
}

/// Writes parameters to a `.safetensors` file (f32, little-endian), atomically.
pub fn write_safetensors(path: &Path, params: &Params) -> Result<(), Error> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .map(|(name, tensor)| {
            let data = tensor.data().iter().flat_map(|value| value.to_le_bytes()).collect();
            (name.to_string(), data, tensor.shape().to_vec())
        })
        .collect();
    let mut views = Vec::new();
    for (name, data, shape) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|error| Error::file(path, format!("cannot encode `{name}`: {error}")))?;
        views.push((name.as_str(), view));
    }
    let encoded =
        safetensors::serialize(views, None).map_err(|error| Error::file(path, format!("cannot encode: {error}")))?;
    write_atomically(path, |file| file.write_all(&encoded))
}

/// Writes through a temporary file in the target's directory, renamed into place on success.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temporary = tempfile::NamedTempFile::new_in(directory).map_err(|error| {
        Error::file(path, format!("cannot create a temporary file in {}: {error}", directory.display()))
    })?;
    {
        let mut writer = std::io::BufWriter::new(temporary.as_file());
        write(&mut writer)
            .and_then(|()| writer.flush())
            .map_err(|error| Error::file(path, format!("cannot write: {error}")))?;
    }
    temporary.persist(path).map_err(|error| Error::file(path, format!("cannot write: {}", error.error)))?;
    Ok(())
}
