import { DataType, makeValueInfo, type ModelProto } from '../autodiff/index.js';

/** Models built in code for the benches. */
export const TinyModelBuilder = {
  /** y = a · b for n × n float32 matrices (the matrix-multiply roofline). */
  matmul(n: number): ModelProto {
    return {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'matmul',
        node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['y'], name: 'mm', attribute: [] }],
        input: [makeValueInfo('a', DataType.FLOAT, [n, n]), makeValueInfo('b', DataType.FLOAT, [n, n])],
        output: [makeValueInfo('y', DataType.FLOAT, [n, n])],
        initializer: [],
      },
    } as unknown as ModelProto;
  },
};
