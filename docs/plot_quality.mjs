// Draws docs/quality-compute.svg from docs/quality.json: perplexity (log
// scale) against the compute achieved, one line per series. No
// dependencies: `node docs/plot_quality.mjs` after editing the data;
// `node docs/plot_quality.mjs joint.json joint-compute.svg` draws another
// data file of docs/ the same way. A data file with "y": {"scale":
// "linear", "label", "name"} plots another measure on a linear axis
// (ffn-blocks.json: speed-up against compute).
import { readFileSync, writeFileSync } from 'node:fs';

const here = new URL('.', import.meta.url);
const [dataFile = 'quality.json', svgFile = 'quality-compute.svg'] = process.argv.slice(2);
const data = JSON.parse(readFileSync(new URL(dataFile, here), 'utf8'));

// the legend takes two series a row below the plot
const rows = Math.ceil(data.series.length / 2);
const W = 720, H = 366 + 18 * rows;
const M = { left: 64, right: 24, top: 40, bottom: H - 324 };
const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
const xs = data.series.flatMap((s) => s.points.map((p) => p[0]));
const ys = data.series.flatMap((s) => s.points.map((p) => p[1]));
const x0 = Math.floor(Math.min(...xs) * 10) / 10, x1 = 1.0;
const linear = data.y?.scale === 'linear';
const yName = data.y?.name ?? 'ppl';
// log axis: bounds in log10 at half-decades; linear: at quarters
const ly0 = linear ? Math.floor(Math.min(...ys) * 4) / 4 : Math.floor(Math.log10(Math.min(...ys)) * 2) / 2;
const ly1 = linear ? Math.ceil(Math.max(...ys) * 4) / 4 : Math.ceil(Math.log10(Math.max(...ys)) * 2) / 2;
// compute falls to the right: the dense model is at the left edge
const X = (v) => M.left + ((x1 - v) / (x1 - x0)) * pw;
const Y = (v) => M.top + (1 - ((linear ? v : Math.log10(v)) - ly0) / (ly1 - ly0)) * ph;
const colors = ['#9aa5b1', '#3b82f6', '#d9480f', '#2b8a3e', '#7048e8', '#c2255c', '#0b7285', '#f59f00'];
const f = (v) => v.toFixed(1);

const out = [];
out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${data.title}</text>`);
// grid: x every 0.1, y at 1-2-5 steps
for (let v = x1; v >= x0 - 1e-9; v -= 0.1) {
  const x = X(v);
  out.push(`<line x1="${f(x)}" y1="${M.top}" x2="${f(x)}" y2="${M.top + ph}" stroke="#e5e7eb"/>`);
  out.push(`<text x="${f(x)}" y="${M.top + ph + 16}" text-anchor="middle">${v.toFixed(1)}</text>`);
}
const yTick = (v) => {
  const y = Y(v);
  out.push(`<line x1="${M.left}" y1="${f(y)}" x2="${M.left + pw}" y2="${f(y)}" stroke="#e5e7eb"/>`);
  out.push(`<text x="${M.left - 6}" y="${f(y + 4)}" text-anchor="end">${v}</text>`);
};
if (linear) for (let v = ly0; v <= ly1 + 1e-9; v += 0.25) yTick(v);
for (let e = Math.floor(ly0); !linear && e <= Math.ceil(ly1); e++) {
  for (const m of [1, 2, 5]) {
    const v = m * 10 ** e;
    if (Math.log10(v) < ly0 - 1e-9 || Math.log10(v) > ly1 + 1e-9) continue;
    yTick(v);
  }
}
out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#6b7280"/>`);
out.push(`<text x="${M.left + pw / 2}" y="${M.top + ph + 34}" text-anchor="middle">compute achieved (fraction of the dense model's per-token layer compute)</text>`);
out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${data.y?.label ?? 'perplexity (log scale)'}</text>`);
data.series.forEach((s, i) => {
  const c = colors[i % colors.length];
  const pts = s.points.map(([x, y]) => `${f(X(x))},${f(Y(y))}`).join(' ');
  const dash = s.dashed ? ' stroke-dasharray="6 4"' : ''; // a bound rather than a measurement
  out.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"${dash}/>`);
  for (const [x, y] of s.points) out.push(`<circle cx="${f(X(x))}" cy="${f(Y(y))}" r="3" fill="${c}"><title>${s.name}: compute ${x}, ${yName} ${y}</title></circle>`);
  // legend: two columns under the axis title
  const lx = M.left + (i % 2) * (pw / 2), ly = M.top + ph + 56 + Math.floor(i / 2) * 18;
  out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${c}" stroke-width="2"${dash}/>`);
  out.push(`<text x="${lx + 28}" y="${ly}">${s.name}</text>`);
});
out.push('</svg>');
writeFileSync(new URL(svgFile, here), out.join('\n') + '\n');
console.log(`wrote docs/${svgFile}`);
