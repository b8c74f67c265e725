//! The one conversion of state handles to and from their protobuf messages.

use kappa_proto::v1 as pb;

use crate::snapshot::{StateHandle, StoredFile};

impl From<&StateHandle> for pb::StateHandle {
    fn from(h: &StateHandle) -> Self {
        pb::StateHandle {
            files: h
                .files
                .iter()
                .map(|f| pb::StoredFile {
                    name: f.name.clone(),
                    object: f.object.clone(),
                    size: f.size,
                })
                .collect(),
        }
    }
}

impl From<pb::StateHandle> for StateHandle {
    fn from(h: pb::StateHandle) -> Self {
        StateHandle {
            files: h
                .files
                .into_iter()
                .map(|f| StoredFile {
                    name: f.name,
                    object: f.object,
                    size: f.size,
                })
                .collect(),
        }
    }
}
