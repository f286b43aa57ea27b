import eslintComments from "@eslint-community/eslint-plugin-eslint-comments/configs";
import js from "@eslint/js";
import importX from "eslint-plugin-import-x";
import simpleImportSort from "eslint-plugin-simple-import-sort";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", ".data/**", ".ci/**", "coverage/**", "dist/**", ".bench-build/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  eslintComments.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { "simple-import-sort": simpleImportSort, "import-x": importX },
    rules: {
      curly: ["error", "multi-line"],
      "simple-import-sort/imports": "error",
      "simple-import-sort/exports": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@eslint-community/eslint-comments/require-description": "error",
      "import-x/extensions": ["error", "ignorePackages", { ts: "always" }],
      "no-restricted-syntax": [
        "error",
        { selector: "CallExpression[callee.object.name='test'][callee.property.name='only']", message: "no focused tests" },
        { selector: "CallExpression[callee.object.name='it'][callee.property.name='only']", message: "no focused tests" },
        { selector: "CallExpression[callee.object.name='describe'][callee.property.name='only']", message: "no focused tests" },
      ],
      // Layer boundaries of DESIGN.md section 3: the reconciler sees drivers and state only
      // through the interfaces in reconciler/types.ts; pure modules do no I/O.
      "import-x/no-restricted-paths": [
        "error",
        {
          zones: [
            { target: "./src/reconciler", from: "./src/drivers", message: "reconciler depends on the Driver interface, not on drivers/" },
            { target: "./src/reconciler", from: "./src/state", message: "reconciler depends on repository interfaces, not on state/" },
            { target: "./src/drivers", from: "./src/state", message: "drivers do not touch the database" },
            { target: "./src/state", from: ["./src/sources", "./src/runtime", "./src/commands"], message: "state/ is below sources, runtime and commands: it may not call them" },
            { target: "./src/state", from: "./src/reconciler", except: ["./types.ts"], message: "state/ implements the reconciler's ports (reconciler/types.ts); decisions belong to its callers" },
          ],
        },
      ],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/config.ts"],
    rules: {
      "no-restricted-properties": ["error", { object: "process", property: "env", message: "read configuration from src/config.ts only" }],
    },
  },
  { files: ["**/*.js", "**/*.mjs"], languageOptions: { globals: { process: "readonly", console: "readonly" } } },
);
