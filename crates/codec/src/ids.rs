//! Types for the numbers that cross module boundaries, where confusing two of them would be a
//! bug: an offset is not an epoch, a broker id is not a partition index. Each is a transparent
//! wrapper; `.0` gives the number for the wire.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

id_type!(
    /// A position in a partition's log (the offset of a record, or the end: one past the last).
    Offset(i64)
);
id_type!(
    /// A partition's leader epoch: grows with every leadership change.
    LeaderEpoch(i32)
);
id_type!(
    /// A broker's `node.id`.
    BrokerId(i32)
);
id_type!(
    /// A producer id handed out by InitProducerId.
    ProducerId(i64)
);
