// Charts: Vega-Lite specifications compiled by vega-lite and rendered to SVG by vega's
// headless view (no canvas needed), then to PNG by resvg. All three come from the bench
// package (bench/package.json), so the library itself never depends on them; when they are
// missing the benchmark still prints its tables and writes its CSV.
import fs from 'node:fs';
import path from 'node:path';

/** Loads the charting packages, or returns null (with the reason) when they are not installed. */
export async function loadCharting() {
  try {
    const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
    let Resvg = null;
    try {
      ({ Resvg } = await import('@resvg/resvg-js'));
    } catch {
      Resvg = null; // PNG is optional
    }
    return { vega, vl, Resvg };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

const BASE_CONFIG = {
  background: 'white',
  font: 'DejaVu Sans, Liberation Sans, Arial, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' },
};

/**
 * Renders a Vega-Lite spec to `<outBase>.svg` (and `<outBase>.png` when resvg loaded).
 * Returns the paths written.
 */
export async function writeChart(charting, spec, outBase) {
  const { vega, vl, Resvg } = charting;
  const full = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec, config: { ...BASE_CONFIG, ...(spec.config ?? {}) } };
  const compiled = vl.compile(full).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.Warn });
  const svg = await view.toSVG();
  view.finalize();
  fs.mkdirSync(path.dirname(outBase), { recursive: true });
  const out = [`${outBase}.svg`];
  fs.writeFileSync(out[0], svg);
  if (Resvg) {
    const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, background: 'white', font: { loadSystemFonts: true } }).render().asPng();
    fs.writeFileSync(`${outBase}.png`, png);
    out.push(`${outBase}.png`);
  }
  return out;
}

/** A chart of samples over time (from the sampler): throughput, dirty pages and RSS stacked. */
export function timelineSpec(title, samples, colorField = 'label') {
  // A line joins only consecutive samples of one run (`segment`), never a phase's samples
  // from different rounds across the runs in between.
  let segment = 0;
  const values = samples.map((s, i) => {
    if (i > 0 && samples[i - 1].label !== s.label) segment++;
    return { ...s, segment, kEntriesPerSec: s.entriesPerSec / 1000 };
  });
  const panel = (field, ytitle) => ({
    width: 640,
    height: 150,
    mark: { type: 'line', point: { size: 12 } },
    encoding: {
      x: { field: 'tSec', type: 'quantitative', title: 'seconds' },
      y: { field, type: 'quantitative', title: ytitle },
      color: { field: colorField, type: 'nominal', title: colorField },
      detail: { field: 'segment', type: 'nominal' },
    },
  });
  return {
    title,
    data: { values },
    vconcat: [panel('kEntriesPerSec', 'k entries/s'), panel('dirtyMB', 'Dirty (MB)'), panel('rssMB', 'RSS (MB)')],
  };
}
