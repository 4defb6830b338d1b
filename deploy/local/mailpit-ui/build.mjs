// Mailpit's web UI bundle (server/ui/dist), built the way its own esbuild.config.mjs does for a
// release. The Go module carries the UI's sources but not the bundle, so `go install` alone
// gives a Mailpit whose API works and whose web UI is a blank page.
//
// Differences from upstream, because the npm registry reachable here does not serve them:
// the API documentation page (server/ui-src/docs.js, which needs `rapidoc`) is left out, and
// so are upstream's lint and browser-test tools. package-lock.json is upstream's lock for the
// same release, pruned to what remains (npm install --package-lock-only --legacy-peer-deps:
// the optional `sass-embedded` peer is not served either; the pure-JS `sass` is used).
import * as esbuild from "esbuild";
import pluginVue from "esbuild-plugin-vue-next";
import { sassPlugin } from "esbuild-sass-plugin";

await esbuild.build({
	entryPoints: ["server/ui-src/app.js"],
	bundle: true,
	minify: true,
	sourcemap: false,
	define: {
		__VUE_OPTIONS_API__: "true",
		__VUE_PROD_DEVTOOLS__: "false",
		__VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
	},
	outdir: "server/ui/dist/",
	plugins: [pluginVue(), sassPlugin({ silenceDeprecations: ["import"], quietDeps: true })],
	loader: { ".svg": "file", ".woff": "file", ".woff2": "file" },
	logLevel: "warning",
});
