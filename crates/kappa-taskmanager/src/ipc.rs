//! Elements on the wire: record batches as Arrow IPC streams, watermarks, idleness and end of
//! stream as frames of the data-exchange protocol; records and watermarks with their origin.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use kappa_proto::v1::ExchangeFrame;
use kappa_proto::v1::exchange_frame::Frame;
use kappa_runtime::TaskError;
use kappa_runtime::element::Element;
use kappa_runtime::latency::Origin;

/// The frames carrying `element`: one, or for a batch whose encoding exceeds `target` bytes,
/// one per slice of rows that fits (a single row larger than `target` goes alone).
pub fn encode(element: Element, target: usize) -> Result<Vec<ExchangeFrame>, TaskError> {
    let frame = |f, origin: Option<Origin>| ExchangeFrame {
        frame: Some(f),
        origin_us: origin.and_then(Origin::known),
    };
    Ok(match element {
        Element::Records(batch, origin) => {
            let mut out = Vec::new();
            encode_batch(&batch, target, &mut out)?;
            out.into_iter()
                .map(|b| frame(Frame::Records(b), Some(origin)))
                .collect()
        }
        Element::Watermark(w, origin) => vec![frame(Frame::Watermark(w), Some(origin))],
        Element::Idle => vec![frame(Frame::Idle(true), None)],
        Element::End => vec![frame(Frame::End(true), None)],
        Element::Barrier(n) => vec![frame(Frame::Barrier(n), None)],
    })
}

/// Appends the IPC streams of `batch`, split by rows until each is at most `target` bytes.
fn encode_batch(
    batch: &RecordBatch,
    target: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), TaskError> {
    let bytes = ipc_stream(batch)?;
    let rows = batch.num_rows();
    if bytes.len() <= target || rows <= 1 {
        out.push(bytes);
        return Ok(());
    }
    let pieces = bytes.len().div_ceil(target).clamp(2, rows);
    let per = rows.div_ceil(pieces);
    let mut offset = 0;
    while offset < rows {
        let len = per.min(rows - offset);
        encode_batch(&batch.slice(offset, len), target, out)?;
        offset += len;
    }
    Ok(())
}

fn ipc_stream(batch: &RecordBatch) -> Result<Vec<u8>, TaskError> {
    let encoding = |e: ArrowError| TaskError::Io(format!("encoding a batch: {e}"));
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(encoding)?;
    w.write(batch).map_err(encoding)?;
    w.into_inner().map_err(encoding)
}

/// The element a frame carries; headers and empty frames are protocol errors.
pub fn decode(frame: ExchangeFrame) -> Result<Element, String> {
    let origin = Origin(frame.origin_us.unwrap_or(0));
    match frame.frame {
        Some(Frame::Records(bytes)) => {
            let mut r = StreamReader::try_new(Cursor::new(bytes), None)
                .map_err(|e| format!("malformed record frame: {e}"))?;
            match r.next() {
                Some(Ok(batch)) => Ok(Element::Records(batch, origin)),
                Some(Err(e)) => Err(format!("malformed record frame: {e}")),
                None => Err("record frame without a batch".into()),
            }
        }
        Some(Frame::Watermark(w)) => Ok(Element::Watermark(w, origin)),
        Some(Frame::Idle(_)) => Ok(Element::Idle),
        Some(Frame::End(_)) => Ok(Element::End),
        Some(Frame::Barrier(n)) => Ok(Element::Barrier(n)),
        Some(Frame::Header(_)) => Err("a second header in one exchange stream".into()),
        None => Err("empty frame".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn one(element: Element) -> ExchangeFrame {
        let mut frames = encode(element, usize::MAX).unwrap();
        assert_eq!(frames.len(), 1);
        frames.remove(0)
    }

    #[test]
    fn a_large_batch_goes_as_frames_under_the_target_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let rows: Vec<String> = (0..1000).map(|i| format!("{i:0>1000}")).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::StringArray::from(rows.clone()))],
        )
        .unwrap();
        let target = 64 * 1024;
        let frames = encode(Element::Records(batch.clone(), Origin(5)), target).unwrap();
        assert!(frames.len() >= 16, "{} frames", frames.len());
        let mut back = Vec::new();
        for f in frames {
            let Some(Frame::Records(bytes)) = &f.frame else {
                panic!("a record frame")
            };
            assert!(bytes.len() <= target, "{} bytes", bytes.len());
            let Element::Records(b, Origin(5)) = decode(f).unwrap() else {
                panic!("records with their origin")
            };
            let col = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>();
            back.extend(col.unwrap().iter().map(|s| s.unwrap().to_string()));
        }
        assert_eq!(back, rows, "every row once, in order");
        // One row larger than the target still goes, alone.
        let big = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)])),
            vec![Arc::new(arrow::array::StringArray::from(vec![
                "x".repeat(100_000),
            ]))],
        )
        .unwrap();
        assert_eq!(
            encode(Element::Records(big, Origin::UNKNOWN), target)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn elements_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let records = Element::Records(batch.clone(), Origin(1_700_000_000_000_000));
        let Element::Records(back, origin) = decode(one(records)).unwrap() else {
            panic!("records")
        };
        assert_eq!(back, batch);
        assert_eq!(origin, Origin(1_700_000_000_000_000));
        assert!(matches!(
            decode(one(Element::Watermark(7, Origin(9)))).unwrap(),
            Element::Watermark(7, Origin(9))
        ));
        // Without an origin (a peer of an older release): unknown.
        assert!(matches!(
            decode(one(Element::Watermark(7, Origin::UNKNOWN))).unwrap(),
            Element::Watermark(7, Origin::UNKNOWN)
        ));
        assert!(matches!(decode(one(Element::End)).unwrap(), Element::End));
        assert!(matches!(
            decode(one(Element::Barrier(9))).unwrap(),
            Element::Barrier(9)
        ));
        assert!(
            decode(ExchangeFrame {
                frame: Some(Frame::Records(vec![1, 2, 3])),
                origin_us: Some(1),
            })
            .is_err()
        );
        assert!(
            decode(ExchangeFrame {
                frame: None,
                origin_us: None
            })
            .is_err()
        );
        // A valid frame cut short at every length is an error, never a panic (cut after the
        // whole batch, without the end-of-stream marker, it still reads as that batch).
        let Some(Frame::Records(whole)) = one(Element::Records(batch.clone(), Origin(3))).frame
        else {
            panic!("a record frame")
        };
        for cut in 0..whole.len() {
            let frame = ExchangeFrame {
                frame: Some(Frame::Records(whole[..cut].to_vec())),
                origin_us: None,
            };
            match decode(frame) {
                Err(_) => {}
                Ok(Element::Records(b, _)) => {
                    assert_eq!(b, batch, "{cut} of {} bytes", whole.len())
                }
                Ok(_) => panic!("{cut} of {} bytes read as another element", whole.len()),
            }
        }
    }
}
