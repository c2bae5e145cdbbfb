// Package postgres classifies PostgreSQL statements for access policy and activity: kind, objects
// read and written (with columns where the parse tree names them), functions called and a
// fingerprint. It parses with PostgreSQL's own grammar through pg_query_go (libpg_query, cgo) and is
// the only package that imports it. It sits in the adapter layer and produces the protocol-neutral
// policy.Statement.
//
//	text ──Classify──▶ pg_query.Parse ──one RawStmt each──▶ walk the tree ──▶ []policy.Statement
//	                                                  (fingerprint each statement's own text)
//
// What a statement is classified as:
//
//	SELECT, VALUES, TABLE, FETCH, MOVE             select   (SELECT ... INTO: ddl)
//	INSERT / UPDATE / DELETE / MERGE               insert / update / delete / merge
//	TRUNCATE                                       delete   (it removes rows)
//	COPY                                           copy     (TO reads, FROM writes)
//	CREATE / ALTER / DROP / COMMENT / ...           ddl
//	GRANT, REVOKE, roles, SET ROLE, SET SESSION AUTHORIZATION, ALTER DEFAULT PRIVILEGES   dcl
//	BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET, RESET, SHOW, DISCARD, DEALLOCATE, CLOSE      transaction
//	CALL, DO                                       function
//	VACUUM, ANALYZE, LOCK, LISTEN, NOTIFY, CHECKPOINT, LOAD, ...                          utility
//	EXPLAIN q, DECLARE c CURSOR FOR q              what q is (EXPLAIN ANALYZE runs q)
//	PREPARE p AS q                                 what q is, with Statement.Prepare = p
//	EXECUTE p                                      execute, with Statement.Execute = p; see Prepared
//	anything the grammar rejects                   unsupported
//
// A SELECT whose WITH clause modifies data (WITH d AS (DELETE ...) SELECT ...) takes the kind of the
// first data-modifying statement, and each written object carries its own operation in Object.Op.
//
// Names are reported as written, after PostgreSQL's case folding: unqualified names have an empty
// schema (engines resolve them with policy.Qualify). Columns are attributed by alias within each
// query level; an unqualified column is attributed to every table of the query and of the queries
// around it, because without the catalog the classifier cannot tell which table has it. That errs
// towards matching deny rules. "SELECT *" and "t.*" give column "*"; INSERT without a column list
// writes "*"; DELETE and count(*) touch the table without a column.
//
// Bodies of DO blocks and functions are opaque: they are classified by their statement (function,
// ddl), not by what the body does.
//
// Shape gives the cache (NewCache) a key under which texts that differ only in literal values and
// comments share one classification. It is a small lexer that follows scan.l only as far as it must
// to find literals and comments exactly, and refuses whatever it is unsure of; FuzzShape checks
// that texts with one key are classified alike.
package postgres
