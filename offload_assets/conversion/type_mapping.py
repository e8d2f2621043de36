"""The type-mapping table for the README (a test keeps it identical to TYPE_MAPPING.md)."""

TYPE_MAPPING_MARKDOWN = """## Type mapping: DynamoDB → Parquet → Glue/Athena

| DynamoDB | Parquet (Arrow) | Glue / Athena | when |
| --- | --- | --- | --- |
| `S` | `string` | `string` | |
| `N` | `int64` | `bigint` | every N value of the column is an integer within int64 |
| `N` | `decimal128(38, s)` | `decimal(38,s)` | otherwise: `s` is the scale that lets the most values fit exactly (ties: the smallest); a number that does not fit is rescued, never rounded |
| `N` | `string` (the number's text) | `string` | no value fits any decimal(38, s) (e.g. `1E+100`) |
| `N` | `double` | `double` | only with `numbers_as_float=True` (rounds beyond ~16 significant digits) |
| `B` | `binary` | `binary` | base64-decoded bytes |
| `BOOL` | `bool` | `boolean` | |
| `NULL` | null | — | reads as NULL, like an absent attribute; an attribute that is only ever NULL is a `string` column |
| `SS` | `list<string>` | `array<string>` | set order as exported |
| `NS` | `list<int64>` / `list<decimal128(38, s)>` | `array<bigint>` / `array<decimal(38,s)>` | element type decided like `N` |
| `BS` | `list<binary>` | `array<binary>` | |
| `M` | `struct<…>` | `struct<…>` | one field per key seen, named and typed by these same rules |
| `M` | `string` (DynamoDB JSON) | `string` | the map has more than `max_map_keys` (200) distinct keys |
| `M` / `L` | `string` (DynamoDB JSON) | `string` | nested more than 24 levels deep (see *Deep nesting*) |
| `L` | `list<T>` | `array<T>` | every non-NULL element has the same DynamoDB type; `T` is decided like a column |
| `L` | `list<string>` (DynamoDB JSON per element) | `array<string>` | element types differ, e.g. `["a", 1]` → `['{"S":"a"}', '{"N":"1"}']` |

Every column carries its DynamoDB attribute name (`original_name`) and DynamoDB type
(`dynamodb_type`: `S`, `N`, `B`, `BOOL`, `SS`, `NS`, `BS`, `M`, `L`, `M_JSON`, `L_JSON`, `JSON`) in
its Parquet field metadata; list elements carry their DynamoDB type too.

### One type per column, and nothing lost: `_rescued_data`

* A column holds the DynamoDB type most of its values have (NULL does not count; ties go to the
  first of S, N, B, BOOL, M, L, SS, NS, BS).
* A value of another type, or a number that does not fit the column exactly, or a map with a key
  the column's struct lacks, is **rescued**: the column is NULL in that row and the string column
  `_rescued_data` holds JSON `{"<attribute name>": <the value as DynamoDB JSON>}` (one key per
  rescued attribute of the row; NULL when nothing was rescued). A misfit nested inside a map or
  list rescues its whole top-level attribute. Per-column counts of rescued values are reported.
* So every value is queryable: typed in its column, or exact in `_rescued_data`, e.g.
  `COALESCE(CAST(rating AS varchar), json_extract_scalar(_rescued_data, '$.Rating.S'))`.
* JSON strings (`M_JSON`, `L_JSON` elements, `_rescued_data`) are DynamoDB JSON, so types stay
  exact (`{"N":"12345678901234567890.5"}`); read them with `json_extract_scalar(col, '$.N')`.
* A map whose only key is `S` or `N` is a map: values are read by position
  (attribute → `{"TAG": payload}`), never guessed from key names.

### Deep nesting

DynamoDB nests maps and lists up to 32 levels (the top-level attribute is level 1; AWS refuses a
32nd map around a scalar, so 31 in practice). Maps and lists at levels 1 to 24 become structs and
lists; a map or list at level 25 or deeper is stored, with everything in it, as its DynamoDB JSON
text in a string field (`dynamodb_type` `M_JSON` for a map, `JSON` for a list): nothing is lost,
e.g. `json_extract_scalar(deep.a.….a, '$.M.b.S')`. The limit is pyarrow's: DuckDB's JSON reader
hands it two nesting levels per DynamoDB level and it refuses more than 64 (reading broke at 30).
A line nested more than 32 levels deep cannot come from DynamoDB: it is a bad line.

### Column names

Glue and Athena want lower-case names of letters, digits and `_`. A name is folded to ASCII
(accents dropped), lower-cased, every other character becomes `_`, a leading digit gets the prefix
`c_`, and it is cut to 255 characters. Names that collide (`Author` and `author`, or an attribute
called `_rescued_data` or, in any case, `ddb_export_timestamp`, the partition key) are resolved deterministically: an attribute keeps the column it had in the
table's schema (by `original_name`, else by exact name); the others are served names-already-safe
first, then in code-point order; the first gets the plain name, the next `_2`, `_3`, …
An attribute never takes a reserved name: `Ddb_Export_Timestamp` becomes `ddb_export_timestamp_2`
(`_3`, … if that is taken) and the partition key keeps its name. A table published by an older
version, whose Glue columns already include `ddb_export_timestamp` (SQL then failed with
`Multiple matches for FieldRef.Name`), is repaired by its next run: the column is dropped from the
table and from every partition, and its values go to the renamed column.
Struct field names follow the same rule within their struct. `ConversionResult.renamed_columns`
lists every top-level attribute whose column name differs from its name.

### One schema across partitions

Given the table's current schema (`existing_schema`), a new partition keeps every existing column in
the same order and type (values that no longer fit are rescued; a column absent from the export is
all NULL), then adds new attributes as new columns (sorted by name), then `_rescued_data` unless it
already existed. Without `dynamodb_type` metadata (a schema read back from Glue), an existing
column's DynamoDB type is inferred from its Arrow type and, where several fit (`array<string>`:
SS or L), from the values.

### Notes

* Numbers are compared and converted as text, never through a float: `decimal128(38, s)` holds
  any number of up to 38 significant digits that fits the column's scale; DynamoDB's exponent range
  (up to `1E+125`, down to `1E-130`) goes to the string fallback or `_rescued_data`.
* Bad lines (`ExportLineError` naming table, file, line and the attribute or key, or set aside
  with `bad_lines="quarantine"`) are lines DynamoDB could not have written: not JSON, not an item,
  unknown tags, several tags in one value, a payload of the wrong JSON type (`{"S": 5}`,
  `{"BOOL": "true"}`), `NULL: false`, bad base64, maps and lists nested more than 32 levels, a key
  twice in one JSON object (two `title` attributes, two type tags, a map key twice), and numbers
  DynamoDB cannot hold: not a number (`NaN`, `Infinity`), more than 38 significant digits, or a
  magnitude beyond `9.99…E+125` or below `1E-130` (zero excepted). Numbers DynamoDB would accept
  in another spelling are read exactly: a leading `+`, leading zeros, `-0` (as 0), exponents.
"""
