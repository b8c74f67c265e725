//! Values of any type a window keeps whole (distinct counts, first and last values) as bytes,
//! in an encoding of Kappa's own: the little-endian bytes of a fixed-width primitive, one
//! byte for a boolean, the bytes of a string or binary value. Saved state then does not
//! depend on the Arrow release that wrote it (Arrow's row format makes no such promise), and
//! bytes read back from disk are checked against their type before they become a column.

use arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, BooleanArray, LargeBinaryArray, LargeStringArray,
    make_array,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float16Type};
use arrow::error::ArrowError;

/// How a type's values are laid out as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A primitive of this many bytes.
    Fixed(usize),
    Bool,
    /// UTF-8 text (any string type).
    Text,
    /// Any binary type.
    Bytes,
}

/// Bytes that are not a value of their type: a corrupt saved state.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("a {data_type} value of {len} bytes (its values take {width})")]
    Width {
        data_type: DataType,
        len: usize,
        width: usize,
    },
    #[error("a boolean value of {0:?} (not one byte, 0 or 1)")]
    Bool(Vec<u8>),
    #[error("a string value that is not UTF-8")]
    Utf8(#[source] std::str::Utf8Error),
    #[error("building a {data_type} column")]
    Build {
        data_type: DataType,
        #[source]
        source: ArrowError,
    },
}

/// The encoding of one type's values.
#[derive(Debug, Clone)]
pub struct ValueCodec {
    data_type: DataType,
    layout: Layout,
}

/// The encoded values of one column.
pub struct Encoded {
    bytes: Vec<u8>,
    /// Where each row's bytes end.
    ends: Vec<usize>,
    nulls: Option<NullBuffer>,
}

impl Encoded {
    /// The bytes of row `row`; None for a null.
    pub fn get(&self, row: usize) -> Option<&[u8]> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return None;
        }
        let start = row
            .checked_sub(1)
            .map_or(Some(0), |r| self.ends.get(r).copied())?;
        self.bytes.get(start..*self.ends.get(row)?)
    }
}

impl ValueCodec {
    /// The codec of `data_type`, if its values can be kept (see
    /// [`kappa_job::sql::is_value_type`]).
    pub fn new(data_type: &DataType) -> Option<Self> {
        let layout = match data_type {
            DataType::Boolean => Layout::Bool,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Layout::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Layout::Bytes,
            t => Layout::Fixed(t.primitive_width()?),
        };
        Some(Self {
            data_type: data_type.clone(),
            layout,
        })
    }

    /// Encodes `column` (of this codec's type). `canonical`: as distinct values, so that
    /// values SQL calls equal encode the same (floats: -0 as 0, every NaN as one NaN).
    pub fn encode(&self, column: &ArrayRef, canonical: bool) -> Result<Encoded, ArrowError> {
        if column.data_type() != &self.data_type {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a {} column where {} values were expected",
                column.data_type(),
                self.data_type
            )));
        }
        let n = column.len();
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(n);
        let mut push = |bytes: &mut Vec<u8>, value: &[u8]| {
            bytes.extend_from_slice(value);
            ends.push(bytes.len());
        };
        match self.layout {
            Layout::Fixed(width) => {
                let data = column.to_data();
                let from = data.offset() * width;
                let values = data
                    .buffers()
                    .first()
                    .and_then(|b| b.as_slice().get(from..from + n * width))
                    .ok_or_else(|| {
                        ArrowError::InvalidArgumentError("a column without its values".into())
                    })?;
                for value in values.chunks_exact(width) {
                    push(&mut bytes, value);
                }
                if canonical {
                    canonical_floats(&self.data_type, &mut bytes);
                }
            }
            Layout::Bool => {
                for v in column.as_boolean().values() {
                    push(&mut bytes, &[u8::from(v)]);
                }
            }
            Layout::Text => {
                let text = cast(column, &DataType::LargeUtf8)?;
                for v in text.as_string::<i64>().iter() {
                    push(&mut bytes, v.unwrap_or_default().as_bytes());
                }
            }
            Layout::Bytes => {
                let binary = cast(column, &DataType::LargeBinary)?;
                for v in binary.as_binary::<i64>().iter() {
                    push(&mut bytes, v.unwrap_or_default());
                }
            }
        }
        Ok(Encoded {
            bytes,
            ends,
            nulls: column.logical_nulls(),
        })
    }

    /// Checks that `bytes` are a value of this type.
    pub fn check(&self, bytes: &[u8]) -> Result<(), ValueError> {
        match self.layout {
            Layout::Fixed(width) if bytes.len() != width => Err(ValueError::Width {
                data_type: self.data_type.clone(),
                len: bytes.len(),
                width,
            }),
            Layout::Bool if !matches!(bytes, [0 | 1]) => Err(ValueError::Bool(bytes.to_vec())),
            Layout::Text => std::str::from_utf8(bytes)
                .map(drop)
                .map_err(ValueError::Utf8),
            _ => Ok(()),
        }
    }

    /// A column of this type from encoded values (None: null), each checked.
    pub fn decode<'a>(
        &self,
        values: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Result<ArrayRef, ValueError> {
        let build = |source| ValueError::Build {
            data_type: self.data_type.clone(),
            source,
        };
        let values: Vec<Option<&[u8]>> = values
            .map(|v| v.map(|b| self.check(b).map(|()| b)).transpose())
            .collect::<Result<_, _>>()?;
        let column: ArrayRef = match self.layout {
            Layout::Fixed(width) => {
                let mut buffer = Vec::with_capacity(values.len() * width);
                for v in &values {
                    match v {
                        Some(b) => buffer.extend_from_slice(b),
                        None => buffer.resize(buffer.len() + width, 0),
                    }
                }
                let nulls = NullBuffer::from_iter(values.iter().map(Option::is_some));
                let data = ArrayData::builder(self.data_type.clone())
                    .len(values.len())
                    .add_buffer(Buffer::from_vec(buffer))
                    .nulls(Some(nulls))
                    .align_buffers(true)
                    .build()
                    .map_err(build)?;
                return Ok(make_array(data));
            }
            Layout::Bool => std::sync::Arc::new(BooleanArray::from_iter(
                values.iter().map(|v| v.map(|b| b == [1])),
            )),
            Layout::Text => std::sync::Arc::new(LargeStringArray::from_iter(
                values
                    .iter()
                    .map(|v| v.map(|b| std::str::from_utf8(b).unwrap_or_default())),
            )),
            Layout::Bytes => std::sync::Arc::new(LargeBinaryArray::from_iter(values)),
        };
        cast(&column, &self.data_type).map_err(build)
    }
}

/// Arrow's half-precision float.
type F16 = <Float16Type as ArrowPrimitiveType>::Native;

/// Rewrites -0 as 0 and every NaN as one NaN in the encoded values of a float type.
fn canonical_floats(data_type: &DataType, bytes: &mut [u8]) {
    macro_rules! canonical {
        ($t:ty, $width:literal) => {
            for chunk in bytes.chunks_exact_mut($width) {
                let mut b = [0u8; $width];
                b.copy_from_slice(chunk);
                let v = <$t>::from_le_bytes(b);
                let zero = <$t>::from_le_bytes([0; $width]);
                if v.is_nan() {
                    chunk.copy_from_slice(&<$t>::NAN.to_le_bytes());
                } else if v == zero {
                    chunk.copy_from_slice(&zero.to_le_bytes());
                }
            }
        };
    }
    match data_type {
        DataType::Float16 => canonical!(F16, 2),
        DataType::Float32 => canonical!(f32, 4),
        DataType::Float64 => canonical!(f64, 8),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Float64Array, Int32Array, StringViewArray, TimestampMillisecondArray};

    fn round_trip(column: ArrayRef) {
        let codec = ValueCodec::new(column.data_type()).unwrap();
        let encoded = codec.encode(&column, false).unwrap();
        let back = codec
            .decode((0..column.len()).map(|i| encoded.get(i)))
            .unwrap();
        assert_eq!(&back, &column);
    }

    #[test]
    fn values_of_every_layout_decode_to_the_same_column() {
        round_trip(Arc::new(Int32Array::from(vec![Some(-3), None, Some(7)])));
        round_trip(Arc::new(
            TimestampMillisecondArray::from(vec![Some(5), None]).with_timezone("+01:00"),
        ));
        round_trip(Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
        ])));
        round_trip(Arc::new(StringViewArray::from(vec![
            Some("a longer string than twelve bytes"),
            None,
            Some(""),
        ])));
        round_trip(Arc::new(LargeBinaryArray::from(vec![
            Some(&b"\xff\x00"[..]),
            None,
        ])));
        // A slice: the values buffer starts before the column.
        let sliced = Arc::new(Int32Array::from(vec![1, 2, 3, 4]).slice(1, 2));
        round_trip(sliced);
    }

    #[test]
    fn distinct_floats_encode_equal_values_the_same() {
        let column = Arc::new(Float64Array::from(vec![0.0, -0.0, f64::NAN, -f64::NAN])) as ArrayRef;
        let codec = ValueCodec::new(&DataType::Float64).unwrap();
        let canonical = codec.encode(&column, true).unwrap();
        assert_eq!(canonical.get(0), canonical.get(1));
        assert_eq!(canonical.get(2), canonical.get(3));
        let exact = codec.encode(&column, false).unwrap();
        assert_ne!(exact.get(0), exact.get(1), "first/last values keep -0");
    }

    #[test]
    fn bytes_that_are_not_a_value_of_the_type_are_errors() {
        let int = ValueCodec::new(&DataType::Int32).unwrap();
        assert!(matches!(
            int.decode([Some(&[1u8, 2][..])].into_iter()),
            Err(ValueError::Width {
                len: 2,
                width: 4,
                ..
            })
        ));
        let text = ValueCodec::new(&DataType::Utf8).unwrap();
        assert!(matches!(text.check(b"\xff"), Err(ValueError::Utf8(_))));
        let boolean = ValueCodec::new(&DataType::Boolean).unwrap();
        assert!(matches!(boolean.check(&[2]), Err(ValueError::Bool(_))));
        assert!(ValueCodec::new(&DataType::Null).is_none());
    }
}
