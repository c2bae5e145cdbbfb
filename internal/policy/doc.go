// Package policy evaluates access management policies against classified statements. It is pure: no
// I/O, no clock, no logging. It sits in the core layer and imports only the root package.
//
// A classifier (internal/sqlparse/postgres, later MySQL and others) turns statement text into
// protocol-neutral Statements; the engine asks a compiled Set for a Decision before it forwards a
// statement, writes the decision to activity, and refuses the statement when Decision.Blocks says so.
//
//	text ──Classify──▶ []Statement ──Set.Evaluate(subject, st)──▶ Decision ──▶ activity, forward or refuse
//
// # Semantics
//
// A statement is split into access units: one per column an object is read or written through, one
// per object touched as a whole, and for CALL the procedure itself. A statement that touches no object
// ("SELECT 1", "DO $$...$$") is one unit with no object.
//
//   - A rule applies to a subject if it names the user (case-insensitively) or one of their groups, or
//     names neither (everyone).
//   - A rule's operations match a unit if they contain "*", the statement's kind, or "select" when the
//     unit is only read. So "deny select on public.salaries" also stops INSERT ... SELECT FROM salaries,
//     COPY salaries TO and UPDATE ... WHERE salary > 0, while "allow update on public.t" is enough for
//     UPDATE t SET a = 1 WHERE id = 2 (the WHERE clause reads t as part of the update). One exception
//     keeps denials precise: a deny rule naming insert, update, delete or merge matches only what
//     such a statement writes, so "deny update on public.salaries" does not stop an UPDATE of another
//     table that reads salaries in a subquery (a select rule does that).
//   - Deny wins: a unit matched by any applicable deny rule denies the whole statement.
//   - Every unit must be allowed: when the repository has any enforcing policy, a unit that no
//     applicable enforcing allow rule covers denies the statement ("no rule allows ...").
//   - Monitor policies are evaluated as if every policy were enforced; when that would deny a
//     statement the enforcing policies allow, the Decision says so (Allowed false, Enforced false) and
//     the statement still runs. That is what lets an administrator try a policy before enforcing it.
//   - No access policy at all: everything is allowed, unsupported statements included — the sidecar's
//     allow_unsupported_queries "applies only to access management policies".
//   - Transaction and session control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET, RESET, SHOW, DISCARD,
//     DEALLOCATE, CLOSE) is always allowed and needs no rule: refusing COMMIT or ROLLBACK would strand
//     a client's transaction, and these statements read no data. SET ROLE and SET SESSION
//     AUTHORIZATION are not in this class; classifiers report them as "dcl".
//   - Unsupported statements (unparseable, or an EXECUTE the engine could not resolve) touch unknown
//     objects. When the sidecar allows unsupported queries they run; otherwise any applicable deny
//     rule whose operations include "unsupported" or "*" denies them, only an allow rule over "*"
//     objects allows them, and anything else is denied.
//
// # Matching objects
//
// Patterns are "*", "schema.table" or "schema.table.column", with '*' matching any run of characters
// inside a part, compared ASCII case-insensitively. A deny pattern matches a unit that may touch what
// it names; an allow pattern must cover all that the unit touches. This matters in three places:
//
//   - column "*" (SELECT *, INSERT without a column list): every deny on a column of that table
//     matches; only an allow whose column part is "*" (or a table pattern) covers it.
//   - no column (DELETE, TRUNCATE, SELECT count(*), DDL on the table): touches the table but no
//     column value, as in PostgreSQL, where count(*) needs the privilege on any one column. Any allow
//     naming the table covers it; a column deny matches it only when its column part is "*".
//   - empty schema (an unqualified name the classifier could not resolve): could be any schema, so
//     any deny matches it and only an allow whose schema part is "*" covers it. Engines resolve names
//     with Qualify before evaluating (PostgreSQL: the first schema of the session's search_path,
//     normally "public"; MySQL: the current database).
//
// Engines call Qualify again after a statement with ChangesDefaultSchema ran (SET search_path,
// USE, ...). When the default schema cannot be known (a PostgreSQL search_path with several
// existing schemas), leave names unqualified: the "unknown schema" rules above then apply.
//
// A written object may carry its own operation (Object.Op), as a DELETE inside the WITH clause of an
// INSERT does; rules are matched against that operation for that object.
//
// Unqualified columns in a query over several tables are attributed to every table in that query
// (the classifier cannot see the catalog): a deny on salaries.salary then also matches
// "SELECT salary FROM employees JOIN salaries ...", as it should, but also a column called salary
// that belongs to the other table. Qualified column references avoid that.
//
// Functions called inside a query are recorded (Statement.Functions) but not checked against rules;
// CALL and DO are statements of kind "function" and need a rule with that operation (for CALL the
// procedure's name is the object).
//
// Rules are named "policy#index", index counted from 0 like rules[0] in the API.
package policy
