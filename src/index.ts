/**
 * infogeo — the geometry a trained classifier imposes on its data, for any TensorFlow.js
 * `LayersModel`, on any tfjs backend.
 *
 * The data manifold (Grementieri & Fioresi, "Model-centric data manifold"):
 * - {@link localDataMatrix}: G(x) = E_{y~p}[∇ₓlog p ∇ₓlog pᵀ] per sample, as a low-rank factor;
 * - {@link localFisher} and {@link datasetFisher}: the same in weight space;
 * - {@link distributionProjector}: projections onto the leaf tangent D_x and across it;
 * - {@link horizontalPath} (Algorithm 4.1) and {@link orthogonalPath}: walks along and across leaves;
 *   {@link kernelPath} (towards a target, across the leaves) and {@link tangentPath} (a fixed
 *   direction's part inside the leaf).
 *
 * The pullback metric (Zavatone-Veth, Yang, Rubinfien, Pehlevan, "Neural networks learn to magnify
 * areas near decision boundaries"):
 * - {@link pullbackMetric}: g = J_Φᵀ J_Φ for any layer Φ, as a low-rank factor, or on a subspace;
 * - {@link volumeElement}: log √det g (full, on a subspace, or the top-k "effective" volume);
 * - {@link scalarCurvature}: the scalar curvature and Ricci tensor of g, from exact second
 *   derivatives (the Gauss equation), on the whole input or on a plane;
 * - {@link planeThroughPoints} and {@link scanPlane}: class, entropy and volume over a plane;
 * - {@link shallowAnalyticDetG}, {@link shallowScalarCurvature}, {@link infiniteWidthMetric}:
 *   closed forms for one-hidden-layer networks, finite and infinite width.
 *
 * Relative stability (Petrini, Favero, Geiger, Wyart, "Relative stability toward diffeomorphisms"):
 * - {@link relativeStability}: R_f = D_f/G_f, deformations against noise of the same norm;
 * - {@link sampleDisplacementField}, {@link deform}, {@link matchedNoise}, {@link temperatureRange}:
 *   the random smooth diffeomorphisms it needs; {@link randomDeform} for training with them.
 *
 * A text classifier's token ids have no geometry: {@link splitAt} its Embedding, and measure the
 * part after it at the embedded sequence.
 *
 * Everything rests on one batched Jacobian core:
 * - {@link inputJacobian}: ∂ log p/∂x (or logits, or any layer's features), per sample;
 * - {@link weightJacobian}: per-sample rows ∂ log p_c/∂w over the trainable weights;
 * - {@link vjp} and {@link jvp}: batched vector products with the input Jacobian;
 *   {@link secondDerivative}: ∂²f[u, v], exact second-order forward mode.
 *
 * infogeo imports no backend and registers nothing when imported. In Node, start the `wasm`
 * backend with `useWasmBackend()` from `infogeo/wasm` (or import `@tensorflow/tfjs-backend-cpu`),
 * then call {@link registerGradientKernels} once. `infogeo/node` runs the batched calls on every
 * core; `infogeo/data` reads MNIST, Fashion-MNIST and CIFAR-10, which `npx infogeo-data NAME`
 * downloads.
 *
 * Every function returns tensors that the caller owns and must dispose; none disposes its inputs.
 *
 * Breaking since 0.1.0 (the full list is in CHANGELOG.md): what is differentiated is `target`
 * everywhere (`pullbackMetric`, `volumeElement` and `scanPlane` took `layer: name`,
 * `relativeStability` took `output`), and how is `strategy` (`jvp` and `pullbackMetric` took
 * `method`; `jvp`'s strategies are `'auto'`, exact forward mode, and `'central'`);
 * `VolumeElementResult.layer` is `target`; `relativeStability`'s median is the lower middle value
 * (as `torch.median`); paths resolve on an already aborted signal; `weightJacobian`'s strategies
 * are `'auto'`, `'graph'` and `'loop'` (`'softmax-chain'` is gone).
 *
 * @module infogeo
 */

export { DataError, InfogeoError, LayerNotFoundError, ShapeError, UnsupportedModelError, ValueError } from './errors.js';

export { wrapClassifier } from './model/classifier.js';
export type { Classifier, ClassifierOptions, LogitsSource, ModelOutput, Target } from './model/classifier.js';
export { splitAt } from './model/split.js';
export type { SplitModel } from './model/split.js';

export { inputJacobian } from './jacobian/input.js';
export type { InputJacobianOptions, JacobianStrategy } from './jacobian/input.js';
export { weightJacobian } from './jacobian/weight.js';
export type { WeightJacobianOptions, WeightJacobianResult, WeightJacobianStrategy, WeightSlice } from './jacobian/weight.js';
export { jvp, secondDerivative, vjp } from './jacobian/products.js';
export type { JvpOptions, JvpStrategy, SecondDerivativeOptions, VjpOptions } from './jacobian/products.js';
export type { Progress, RunOptions } from './jacobian/chunks.js';

export { localDataMatrix, distributionProjector } from './infogeo/dataMatrix.js';
export type { DistributionProjectorOptions, LocalDataMatrixOptions, LocalDataMatrixResult, SampledRows, TopKRows } from './infogeo/dataMatrix.js';
export { datasetFisher, localFisher } from './infogeo/fisher.js';
export type { DatasetFisherOptions, DatasetFisherResult, LocalFisherOptions, LocalFisherResult } from './infogeo/fisher.js';
export { horizontalPath, kernelPath, orthogonalPath, tangentPath } from './paths/paths.js';
export type { HorizontalPathOptions, KernelPathOptions, LeafPath, OrthogonalPathOptions, PathOptions, PathStep, StopReason } from './paths/paths.js';
export { defaultFeatureLayer, pullbackMetric, volumeElement } from './pullback/metric.js';
export type { MetricNormalization, PullbackMetricOptions, VolumeElementOptions, VolumeElementResult, VolumeMode } from './pullback/metric.js';
export { scalarCurvature } from './pullback/curvature.js';
export type { ScalarCurvatureOptions, ScalarCurvatureResult } from './pullback/curvature.js';
export { planePoints, planeThroughPoints, scanPlane } from './pullback/plane.js';
export type { Plane, PlaneScan, ScanPlaneOptions } from './pullback/plane.js';
export { shallowAnalyticDetG, shallowScalarCurvature } from './pullback/shallow.js';
export { infiniteWidthMetric } from './pullback/infiniteWidth.js';
export type { InfiniteWidthOptions, InfiniteWidthResult } from './pullback/infiniteWidth.js';
export type {
  ShallowActivation,
  ShallowCurvatureOptions,
  ShallowMetricOptions,
  ShallowMetricResult,
  ShallowNet,
} from './pullback/shallow.js';
export {
  activeModes,
  deform,
  GAUSSIAN_SIGMA,
  matchedNoise,
  randomDeform,
  sampleDisplacementField,
  temperatureForDisplacement,
  temperatureGrid,
  temperatureRange,
  typicalDisplacement,
} from './stability/diffeo.js';
export type { DisplacementFieldOptions, Interpolation, RandomDeformOptions } from './stability/diffeo.js';
export { relativeStability } from './stability/stability.js';
export type { RelativeStabilityOptions, RelativeStabilityResult, StabilityPoint } from './stability/stability.js';
export { LowRankPSD, RowSpaceProjector } from './linalg/lowRankPSD.js';
export type { RankOptions } from './linalg/lowRankPSD.js';
export type { RowBasis64 } from './linalg/rows.js';

export { registerGradientKernels } from './backends/gradientKernels.js';
