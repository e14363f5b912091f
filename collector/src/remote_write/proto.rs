//! The remote-write 1.0 wire messages (`prometheus.WriteRequest` and what it contains), with
//! field numbers exactly as Prometheus's `prompb/remote.proto` and `prompb/types.proto`.
//!
//! Label names and values are declared `bytes` rather than `string`: the wire format is the
//! same, but prost's `string` decoding fails the whole message with a message that names no
//! field. Decoding them as bytes lets the receiver say which series and label carried invalid
//! UTF-8, and `String::from_utf8` then reuses the buffer without copying.

/// `prometheus.WriteRequest`. Field 2 is reserved in the upstream schema.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Should include `__name__`; Prometheus sends them sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms: decoded so they can be counted and rejected with a clear reason.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`, with byte-string fields (see the module docs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl Label {
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// `prometheus.Sample`: timestamp in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`. Accepted on the wire and not stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.BucketSpan` of a native histogram.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `prometheus.Histogram` (native histogram). The upstream `oneof`s for the counts are
/// flattened into plain fields: the wire format is identical.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    #[prost(double, tag = "2")]
    pub count_float: f64,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(uint64, tag = "6")]
    pub zero_count_int: u64,
    #[prost(double, tag = "7")]
    pub zero_count_float: f64,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// A [`MetricKind`] value.
    #[prost(enumeration = "MetricKind", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricKind {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    Gaugehistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

impl MetricKind {
    /// The store's name for this kind; values outside the enum count as unknown.
    pub fn to_store(raw: i32) -> store::MetricType {
        match MetricKind::try_from(raw) {
            Ok(MetricKind::Counter) => store::MetricType::Counter,
            Ok(MetricKind::Gauge) => store::MetricType::Gauge,
            Ok(MetricKind::Histogram) => store::MetricType::Histogram,
            Ok(MetricKind::Gaugehistogram) => store::MetricType::GaugeHistogram,
            Ok(MetricKind::Summary) => store::MetricType::Summary,
            Ok(MetricKind::Info) => store::MetricType::Info,
            Ok(MetricKind::Stateset) => store::MetricType::StateSet,
            Ok(MetricKind::Unknown) | Err(_) => store::MetricType::Unknown,
        }
    }

    /// The wire value for a store metric type (used by senders such as the benchmark).
    pub fn from_store(t: store::MetricType) -> MetricKind {
        match t {
            store::MetricType::Counter => MetricKind::Counter,
            store::MetricType::Gauge => MetricKind::Gauge,
            store::MetricType::Histogram => MetricKind::Histogram,
            store::MetricType::GaugeHistogram => MetricKind::Gaugehistogram,
            store::MetricType::Summary => MetricKind::Summary,
            store::MetricType::Info => MetricKind::Info,
            store::MetricType::StateSet => MetricKind::Stateset,
            store::MetricType::Unknown => MetricKind::Unknown,
        }
    }
}

/// Encodes a request as a remote-write 1.0 body: protobuf, then snappy block format.
pub fn encode_snappy(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    use prost::Message as _;
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}
