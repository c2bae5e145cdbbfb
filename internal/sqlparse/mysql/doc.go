// Package mysql classifies MySQL and MariaDB statements for access policy and activity: kind,
// objects read and written (with columns where the statement names them), functions called and a
// fingerprint. It parses with the TiDB parser (a MySQL grammar in pure Go) and is the only package
// that imports it. It sits in the adapter layer beside sqlparse/postgres, mirrors its API (Classify,
// Cache, Prepared) and produces the protocol-neutral policy.Statement.
//
//	text ──Classify──▶ parser.Parse ──one StmtNode each──▶ walk the tree ──▶ []policy.Statement
//	                                                 (fingerprint: the parser's normalized digest)
//
// What a statement is classified as:
//
//	SELECT, TABLE, VALUES, DO, SELECT ... INTO @var       select
//	SELECT ... INTO OUTFILE / DUMPFILE                     copy     (reads)
//	LOAD DATA [LOCAL] INFILE                               copy     (writes)
//	INSERT, REPLACE / UPDATE / DELETE                      insert / update / delete
//	TRUNCATE                                               delete   (it removes rows)
//	CREATE / ALTER / DROP / RENAME ...                     ddl      (DROP DATABASE d: table d.*)
//	GRANT, REVOKE, users and roles, SET PASSWORD, SET ROLE dcl
//	SHOW COLUMNS / CREATE TABLE / INDEX, DESCRIBE t        select   (reads t as a whole)
//	BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET, other SHOW, USE, DEALLOCATE   transaction
//	CALL                                                   function
//	ANALYZE, FLUSH, KILL, LOCK/UNLOCK TABLES, HELP, ...    utility
//	EXPLAIN q, DESCRIBE q                                  what q is
//	PREPARE p FROM 'q'                                     what q is, with Statement.Prepare = p
//	PREPARE p FROM @var                                    unsupported (the text cannot be known)
//	EXECUTE p                                              execute, with Statement.Execute = p; see Prepared
//	anything the grammar rejects                           unsupported
//
// The schema of an object is its database ("db.table"); names written without one have an empty
// schema, and the engine resolves them with policy.Qualify to the session's default database.
// Names are reported as written (MySQL compares table names case-sensitively on Linux, the policy
// matches ASCII case-insensitively). Columns are attributed by alias within each query level; an
// unqualified column is attributed to every table of the query and of the queries around it,
// because without the catalog the classifier cannot tell which table has it. That errs towards
// matching deny rules. "SELECT *" and "t.*" give column "*"; INSERT without a column list writes
// "*"; DELETE and count(*) touch the table without a column.
//
// NewCache remembers classifications per text and, through Shape, per shape: texts that differ only
// in literal values and comments share one parse. Shape refuses whatever depends on the session's
// sql_mode (double quotes, backslashes) or on a literal's value (see its documentation).
//
// Differences between the grammar and the server that matter for policy, and how they are met:
//   - MySQL version comments /*!NNNNN ... */ are code for both.
//   - MariaDB executable comments /*M!NNNNNN ... */ are code for MariaDB and a comment for the TiDB
//     grammar: a text containing one is classified as unsupported.
//   - With sql_mode ANSI_QUOTES the server reads "x" as a name where the grammar reads a string;
//     policies that deny columns should not rely on sessions that set it (see docs/mysql.md).
//   - Stored routines, triggers and views are opaque: CALL is classified by its statement
//     (function), not by what the routine does.
package mysql
