//! Elements on the wire: record batches as Arrow IPC streams, watermarks, idleness and end of
//! stream as frames of the data-exchange protocol.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use kappa_proto::v1::ExchangeFrame;
use kappa_proto::v1::exchange_frame::Frame;
use kappa_runtime::TaskError;
use kappa_runtime::element::Element;

/// The frame carrying `element`.
pub fn encode(element: Element) -> Result<ExchangeFrame, TaskError> {
    let frame = match element {
        Element::Records(batch) => {
            let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())
                .map_err(|e| TaskError::Io(format!("encoding a batch: {e}")))?;
            w.write(&batch)
                .map_err(|e| TaskError::Io(format!("encoding a batch: {e}")))?;
            let bytes = w
                .into_inner()
                .map_err(|e| TaskError::Io(format!("encoding a batch: {e}")))?;
            Frame::Records(bytes)
        }
        Element::Watermark(w) => Frame::Watermark(w),
        Element::Idle => Frame::Idle(true),
        Element::End => Frame::End(true),
        Element::Barrier(n) => Frame::Barrier(n),
    };
    Ok(ExchangeFrame { frame: Some(frame) })
}

/// The element a frame carries; headers and empty frames are protocol errors.
pub fn decode(frame: ExchangeFrame) -> Result<Element, String> {
    match frame.frame {
        Some(Frame::Records(bytes)) => {
            let mut r = StreamReader::try_new(Cursor::new(bytes), None)
                .map_err(|e| format!("malformed record frame: {e}"))?;
            match r.next() {
                Some(Ok(batch)) => Ok(Element::Records(batch)),
                Some(Err(e)) => Err(format!("malformed record frame: {e}")),
                None => Err("record frame without a batch".into()),
            }
        }
        Some(Frame::Watermark(w)) => Ok(Element::Watermark(w)),
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

    #[test]
    fn elements_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let Element::Records(back) =
            decode(encode(Element::Records(batch.clone())).unwrap()).unwrap()
        else {
            panic!("records")
        };
        assert_eq!(back, batch);
        assert!(matches!(
            decode(encode(Element::Watermark(7)).unwrap()).unwrap(),
            Element::Watermark(7)
        ));
        assert!(matches!(
            decode(encode(Element::End).unwrap()).unwrap(),
            Element::End
        ));
        assert!(matches!(
            decode(encode(Element::Barrier(9)).unwrap()).unwrap(),
            Element::Barrier(9)
        ));
        assert!(
            decode(ExchangeFrame {
                frame: Some(Frame::Records(vec![1, 2, 3]))
            })
            .is_err()
        );
        assert!(decode(ExchangeFrame { frame: None }).is_err());
    }
}
