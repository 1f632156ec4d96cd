// Runs an ONNX model in ONNX Runtime (onnxruntime-node) on the images of a
// safetensors file and writes the logits to another:
//   node run_onnx.mjs MODEL.onnx IMAGES.safetensors LOGITS.safetensors [BATCH]
// IMAGES holds one float32 tensor "images" [N, 3, H, W]; LOGITS gets
// "logits" [N, classes]. The model runs BATCH images at a time (default
// 100), so the file's batch dimension must be dynamic.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import * as ort from 'onnxruntime-node';

function readSafetensors(path) {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const base = 8 + headerLength;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`${path}: ${name} is ${info.dtype}, expected F32`);
    const [begin, end] = info.data_offsets;
    const data = new Float32Array(end - begin >> 2);
    Buffer.from(data.buffer).set(bytes.subarray(base + begin, base + end));
    tensors[name] = { shape: info.shape, data };
  }
  return tensors;
}

function writeSafetensors(path, name, shape, data) {
  let header = JSON.stringify({ [name]: { dtype: 'F32', shape, data_offsets: [0, data.byteLength] } });
  header += ' '.repeat((8 - (header.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, Buffer.concat([length, Buffer.from(header), Buffer.from(data.buffer)]));
  renameSync(temporary, path);
}

const [modelPath, imagesPath, logitsPath, batchText] = process.argv.slice(2);
if (!logitsPath) {
  console.error('usage: node run_onnx.mjs MODEL.onnx IMAGES.safetensors LOGITS.safetensors [BATCH]');
  process.exit(2);
}
const batch = Number(batchText ?? 100);
const images = readSafetensors(imagesPath).images;
if (!images) throw new Error(`${imagesPath}: no tensor "images"`);
const [n, ...sample] = images.shape;
const sampleSize = sample.reduce((a, b) => a * b, 1);
// One thread: the test compares numbers, not speed, and CI machines are small.
const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all',
});
let logits = null, classes = 0;
for (let start = 0; start < n; start += batch) {
  const count = Math.min(batch, n - start);
  const input = new ort.Tensor('float32',
    images.data.subarray(start * sampleSize, (start + count) * sampleSize), [count, ...sample]);
  const output = (await session.run({ input })).logits;
  if (!logits) {
    classes = output.dims[1];
    logits = new Float32Array(n * classes);
  }
  logits.set(output.data, start * classes);
}
writeSafetensors(logitsPath, 'logits', [n, classes], logits);
console.log(`${modelPath}: ${n} images, ${classes} classes, ORT ${ort.env.versions.common}`);
