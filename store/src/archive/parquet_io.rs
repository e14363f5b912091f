//! What the archive's Parquet writers and readers share: the schema tag every file carries,
//! the base writer properties, column reads and error mapping.

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterPropertiesBuilder};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};

use crate::error::{Result, StoreError};

/// Key-value metadata naming the schema, so a reader can refuse a file it does not know.
pub const SCHEMA_KEY: &str = "lookout.schema";

pub fn parquet_err(what: &str, e: parquet::errors::ParquetError) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// zstd at `zstd_level`, row groups of at most `row_group_rows`, min/max statistics per
/// column chunk, the schema tag and the writer's name.
pub fn writer_properties(
    schema_name: &str,
    zstd_level: i32,
    row_group_rows: usize,
) -> Result<WriterPropertiesBuilder> {
    let zstd = ZstdLevel::try_new(zstd_level).map_err(|e| parquet_err("zstd level", e))?;
    Ok(parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_KEY.to_string(),
            schema_name.to_string(),
        )]))
        .set_created_by(format!("lookout {}", env!("CARGO_PKG_VERSION"))))
}

/// Refuses a file whose schema tag is not `expected`.
pub fn check_schema(reader: &SerializedFileReader<Bytes>, expected: &str) -> Result<()> {
    let kv = reader.metadata().file_metadata().key_value_metadata();
    let schema = kv
        .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_KEY))
        .and_then(|k| k.value.as_deref());
    if schema != Some(expected) {
        return Err(StoreError::Unavailable(format!(
            "archive file has schema {schema:?}, this build reads {expected}"
        )));
    }
    Ok(())
}

/// Reads `rows` rows of one column, appending the values to `out` (and, for an optional
/// column, one definition level per row to `def_levels`: 1 where a value is present).
pub fn read_column<T: parquet::data_type::DataType>(
    rg: &dyn RowGroupReader,
    column: usize,
    rows: usize,
    mut def_levels: Option<&mut Vec<i16>>,
    out: &mut Vec<T::T>,
) -> Result<()> {
    let what = "reading an archive column";
    let reader = rg
        .get_column_reader(column)
        .map_err(|e| parquet_err(what, e))?;
    let mut typed = parquet::column::reader::get_typed_column_reader::<T>(reader);
    let mut read = 0;
    while read < rows {
        let (records, _, _) = typed
            .read_records(rows - read, def_levels.as_deref_mut(), None, out)
            .map_err(|e| parquet_err(what, e))?;
        if records == 0 {
            break;
        }
        read += records;
    }
    if read != rows {
        return Err(StoreError::Unavailable(format!(
            "reading an archive file: column {column} has {read} rows, its row group {rows}"
        )));
    }
    Ok(())
}
